"""The meta-training loop: compiled chunks of meta-steps, validation, checkpoints, test.

The loop is deliberately thin. Each compiled call runs ``steps_per_call``
meta-steps with :func:`jmeta.parallel.sharded_scan_steps`, task sampling
included, the data set passed as an argument, each meta-batch split over the
devices of :func:`jmeta.train.devices.train_mesh` (all local devices by
default). Step ``s`` draws its tasks from ``fold_in(train_key, s)``, so a run
does not depend on how it is cut into calls (nor, beyond float rounding, on
the number of devices), and one resumed from a checkpoint continues bit for
bit as it would have. Between calls the loop logs, validates and checkpoints.

The run folder is held for the whole run (:class:`~jmeta.train.outputs.RunFolder`:
a lock, the marker, replacement only once the new run has started) and only
finite states are checkpointed (see :class:`TrainingDiverged`).
"""

from __future__ import annotations

import json
import time
import warnings
from contextlib import suppress
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

import jmeta
from jmeta import parallel
from jmeta.datasets.conversion import conversion_for
from jmeta.step import MetaTrainState, nonfinite_cause
from jmeta.train import best as best_lib
from jmeta.train import outputs, processes
from jmeta.train import seeds as seeds_lib
from jmeta.train.build import build_learners, meta_optimizer, run_state
from jmeta.train.checkpoint import Checkpoints
from jmeta.train.compilation_cache import enable_compilation_cache
from jmeta.train.config import TrainConfig, resolve_config
from jmeta.train.devices import to_mesh, train_mesh
from jmeta.train.logs import MetricsLog, plot_curves, read_metrics, write_json
from jmeta.train.memory import check_memory
from jmeta.train.problem import Problem, Split, build_problem
from jmeta.train.processes import NoLog, ReadOnlyFolder, initialize, is_primary
from jmeta.train.results import Scores, format_scores, scores_to_json
from jmeta.train.resume import made_by, plan_resume
from jmeta.train.scoring import test_scores, validate
from jmeta.types import MetaLearner


class TrainingDiverged(FloatingPointError):
    """A meta-step gave a non-finite loss or gradient (or parameters); the run stopped.

    Only states that training can continue from are kept as checkpoints: a
    checkpoint of the state whose very next step is not finite is deleted
    (resuming from it would fail again whatever the step size), and a state
    with non-finite parameters is never saved. ``--resume --meta-lr SMALLER``
    continues from ``last_checkpoint`` (from step 0 if it is ``None``).

    Attributes:
      step: meta-steps applied before the failing one (the parameters are
        those after this many steps).
      last_checkpoint: the newest checkpoint kept, the last state training can
        continue from (``None`` if there is none).
    """

    def __init__(self, message: str, step: int, last_checkpoint: int | None):
        super().__init__(message)
        self.step = step
        self.last_checkpoint = last_checkpoint


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
      config: the resolved configuration (``output_dir`` filled in).
      output_dir: where the run wrote its files.
      state: the final :class:`~jmeta.MetaTrainState` (with ``seeds``: each
        leaf has a leading axis of one entry per seed).
      test: ``{test-time inner steps: {metric: Estimate}}`` on the test split
        (empty with ``seeds``: see ``seeds``).
      seconds: wall time of this call.
      seeds: with ``config.seeds``, each seed's scores and their spread
        (:class:`~jmeta.train.SeedResults`); otherwise ``None``.
    """

    config: TrainConfig
    output_dir: Path
    state: MetaTrainState
    test: Scores
    seconds: float
    seeds: seeds_lib.SeedResults | None = None

    def summary(self) -> str:
        """A few lines for people: what ran, how long, the test table."""
        c = self.config
        if c.is_regression:
            what = "sinusoid regression"
        else:
            what = f"{c.dataset} {c.test_split}, {c.test_ways}-way {c.shots}-shot"
            if c.test_ways != c.ways:
                what += f" (trained {c.ways}-way)"
        header = (
            f"test: {c.eval_tasks} fixed tasks (seed {c.eval_seed}), mean ± 95% confidence interval"
        )
        runs = ""
        if self.seeds is not None:
            runs = f"{len(self.seeds.test)} seeds ({' '.join(map(str, self.seeds.test))}), "
            header = seeds_lib.seeds_header(header)
        first = (
            f"{c.algorithm} on {what}: {runs}{_steps_done(self.state)} meta-steps; "
            f"{self.seconds:.1f} s in this call. Outputs in {self.output_dir}"
        )
        if self.seeds is not None:
            table = seeds_lib.format_seed_scores(
                self.seeds.test, self.seeds.diverged, regression=c.is_regression, header=header
            )
        else:
            table = format_scores(self.test, regression=c.is_regression, header=header)
        return first + "\n" + table


def train(
    config: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> TrainResult:
    """Meta-train, validate, checkpoint and test, as ``config`` says.

    Args:
      config: a :class:`TrainConfig` (its presets were applied when it was made).
      resume: continue the run in ``config.output_dir`` from its newest intact
        checkpoint. The saved configuration must match, except ``num_steps``,
        ``meta_lr`` and ``data_dir`` (docs/training.md, "Checkpoints and resuming").
      overwrite: replace the run in an existing ``output_dir`` (only files
        jmeta wrote, once the new run has started).
      progress: show a progress bar (tqdm, on stderr).

    Returns:
      A :class:`TrainResult`; ``result.summary()`` is the printed report.

    Raises:
      FileExistsError: ``output_dir`` already holds a run and neither
        ``resume`` nor ``overwrite`` is set, or files jmeta did not write.
      RunFolderBusy: another process is writing ``output_dir``.
      TrainingDiverged: a meta-step went non-finite; the last good checkpoint is kept.
      WriteError: a file of the run could not be written (read-only folder,
        full disk); the checkpoints written before are intact.
      ValueError, TypeError: a bad configuration, a resume the rules refuse,
        or a data split too small for the tasks asked for.

    Example:
      >>> from jmeta.train import TrainConfig, train
      >>> result = train(TrainConfig(num_steps=2000))  # doctest: +SKIP
      >>> print(result.summary())  # doctest: +SKIP
    """
    started = time.perf_counter()
    return run(
        setup(config, resume=resume, overwrite=overwrite), progress=progress, started=started
    )


class Setup(NamedTuple):
    """A run ready to start: everything that can fail on bad input has been checked."""

    config: TrainConfig
    output_dir: Path
    problem: Problem
    step: jmeta.MetaTrainStep
    test_learner: MetaLearner
    state: MetaTrainState
    train_key: jax.Array
    checkpoints: Checkpoints
    folder: outputs.RunFolder | ReadOnlyFolder
    resumed: bool
    mesh: Mesh
    primary: bool


def setup(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> Setup:
    """Check the data and memory, lock and check the output folder, build or restore the state.

    The first half of :func:`train`: the errors of bad input (data, memory,
    output folder, checkpoint, resume rules) are raised here, before anything
    is written or replaced; the config checked its own fields when it was
    made. On success the output folder is locked until :func:`run` ends.
    """
    config = resolve_config(config)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other; pass one.")
    if resume and config.output_dir is None:
        raise ValueError("--resume needs --output-dir: the folder of the run to continue.")
    initialize(config)  # joins the other processes of a run of several
    enable_compilation_cache()
    mesh = train_mesh(config)  # checks --devices and the meta-batch against the devices
    processes.watch_peers(config)  # one that dies stops the others (stop_watching in run)
    try:
        return _setup(config, mesh, resume=resume, overwrite=overwrite)
    except BaseException:
        processes.stop_watching(ok=False)
        raise


def _setup(config: TrainConfig, mesh: Mesh, *, resume: bool, overwrite: bool) -> Setup:
    problem = build_problem(config)  # checks the data before anything is written
    out = Path(config.output_dir) if config.output_dir else outputs.default_output_dir(config)
    config = config.replace(output_dir=str(out))
    train_learner, test_learner = build_learners(config, problem)
    step = jmeta.meta_train_step(train_learner, meta_optimizer(config))
    check_memory(config, problem, step, train_learner, devices=mesh.size)  # a device's share
    like, train_key = run_state(step, train_learner, problem.model, config, abstract=True)
    primary = is_primary()  # process 0 writes; the others read the folder
    folder: outputs.RunFolder | ReadOnlyFolder = (
        outputs.RunFolder.open(out, resume=resume, overwrite=overwrite)
        if primary
        else ReadOnlyFolder(out)
    )
    try:
        ckpts = Checkpoints(out / outputs.CHECKPOINTS, keep=config.keep_checkpoints)
        plan = None
        if resume:
            assert folder.record is not None  # RunFolder.open(resume=True) refuses a folder without
            seeds_lib.check_resume(folder.saved_config(), config, out / outputs.CONFIG)
            plan = plan_resume(folder.record, ckpts, config, folder.saved_config(), like)
        if plan is None or plan.state is None:
            state, _ = run_state(step, train_learner, problem.model, config)
        else:
            state = plan.state
        shape = problem.image_shape
        images = None if shape is None else conversion_for(config.dataset, shape)
        folder.start(config, resumed=plan.entry if plan else None, images=images)  # first write
        for stale in plan.stale if plan and primary else ():
            ckpts.delete(stale)
    except BaseException:
        folder.close()
        raise
    problem = problem._replace(  # each split's data replicated on the devices, once
        **{
            role: split._replace(data=to_mesh(split.data, mesh))
            for role in ("train", "val", "test")
            if (split := getattr(problem, role)) is not None
        }
    )
    state = to_mesh(state, mesh)
    # A host value, which jit places on the mesh (with several processes too).
    train_key = jax.random.wrap_key_data(
        jax.numpy.asarray(np.asarray(jax.random.key_data(train_key)))
    )
    return Setup(
        config,
        out,
        problem,
        step,
        test_learner,
        state,
        train_key,
        ckpts,
        folder,
        resume,
        mesh,
        primary,
    )


def run(prepared: Setup, *, progress: bool = True, started: float | None = None) -> TrainResult:
    """The second half of :func:`train`: meta-train, test, write results, timings and curves.

    Releases the output folder's lock when it returns or raises.
    """
    started = time.perf_counter() if started is None else started
    config, out, problem = prepared.config, prepared.output_dir, prepared.problem
    folder, state = prepared.folder, prepared.state
    first = _steps_done(state)
    assert problem.train is not None and problem.test is not None  # setup loads every split
    try:
        log = (
            MetricsLog(
                out / outputs.METRICS,
                resume_step=first if prepared.resumed else None,
                tensorboard_dir=out / outputs.TENSORBOARD,
            )
            if prepared.primary
            else NoLog(out / outputs.METRICS)
        )
        processes.sync("metrics")  # the others read the log once process 0 has cut it (resume)
        try:
            state, best, diverged = _run(
                config, problem, prepared.step, prepared.test_learner, state,
                prepared.train_key, prepared.checkpoints, log, progress, folder, prepared.mesh,
            )  # fmt: skip
            folder.started()
            if config.seeds is not None:
                per_seed = _test_seeds(config, prepared, state, diverged, log)
                test: Scores = {}
                results = seeds_lib.results_json(
                    config.seeds, per_seed.steps, per_seed.test, per_seed.diverged
                )
            else:
                per_seed = None
                tested, tested_step = state.meta_params, int(state.step)
                if config.keep_best and best.step is not None:
                    processes.sync("best")  # process 0 has written it
                    tested_step = best.step
                    tested = best_lib.best_checkpoints(out).restore(like=state, step=best.step)
                    tested = to_mesh(tested.meta_params, prepared.mesh)
                test = test_scores(
                    config, prepared.test_learner, tested, problem.test, mesh=prepared.mesh
                )
                for inner_steps, scores in test.items():
                    log.write(_record("test", tested_step, scores, inner_steps=inner_steps))
                results = {"step": int(state.step), "test": scores_to_json(test)}
        finally:
            log.close()
        reason = None if best is None else best_lib.stop_reason(best, config.early_stop)
        reason = reason or ("time_limit" if _steps_done(state) < config.num_steps else "num_steps")
        if best is not None:
            results.update(tested_step=tested_step, best=best.to_json(),
                           stopped={"reason": reason, "step": _steps_done(state),
                                    "validations_without_improvement": best.since})  # fmt: skip
        elif reason == "time_limit":
            results["stopped"] = {"reason": reason, "step": _steps_done(state)}
        seconds = time.perf_counter() - started
        if prepared.primary:
            write_json(out / outputs.RESULTS, results)
            _add_timing(out / outputs.TIMINGS, first, _steps_done(state), seconds, prepared.resumed)
            curves = read_metrics(out / outputs.METRICS)
            plot_curves(curves, out / outputs.CURVES, title=_title(config))
    except BaseException:
        folder.abandon()  # puts a replaced run back if the new one never started
        processes.stop_watching(ok=False)
        raise
    finally:
        folder.close()
        processes.stop_watching()
    return TrainResult(config, out, state, test, seconds, per_seed)


def _steps_done(state) -> int:
    """Meta-steps the run has taken (with seeds: the seeds that did not diverge)."""
    return int(np.max(jax.device_get(state.step)))


def _test_seeds(config, prepared: Setup, state, diverged, log) -> seeds_lib.SeedResults:
    """The test scores of each seed that did not diverge."""
    steps = np.asarray(jax.device_get(state.step))
    at = {seed: int(steps[i]) for i, seed in enumerate(config.seeds)}
    assert prepared.problem.test is not None  # every run has a test split
    test = {}
    for i, seed in enumerate(config.seeds):
        if seed in diverged:
            continue
        params = seeds_lib.seed_entry(state.meta_params, i)
        test[seed] = test_scores(config, prepared.test_learner, params, prepared.problem.test,
                                 mesh=prepared.mesh)  # fmt: skip
        for inner_steps, scores in test[seed].items():
            log.write(_record("test", at[seed], scores, inner_steps=inner_steps, seed=seed))
    return seeds_lib.SeedResults(test, at, dict(diverged))


def _add_timing(path: Path, first: int, last: int, seconds: float, resumed: bool) -> None:
    """Append this call to ``timings.json`` (kept apart from the scores in ``results.json``)."""
    sessions = []
    if resumed:
        with suppress(OSError, ValueError, KeyError, TypeError):
            sessions = list(json.loads(path.read_text())["sessions"])
    sessions.append({"from_step": first, "to_step": last, "seconds": seconds})
    write_json(path, {"sessions": sessions})


def _run(config, problem, step, test_learner, state, train_key, ckpts, log, progress, folder, mesh):
    """Meta-steps from ``state.step`` to ``config.num_steps`` (or an early stop, or the time limit).

    Returns ``(final state, validation standing, diverged seeds)``; the
    standing is ``None`` unless ``keep_best`` or ``early_stop`` is set
    (:mod:`jmeta.train.best`); the last is ``{seed: what happened}`` (empty
    without ``seeds``).
    """
    from tqdm.auto import tqdm

    best = None
    if config.keep_best or config.early_stop:
        best = best_lib.replay(best_lib.metric_for(config.is_regression), read_metrics(log.path))

    multi = config.seeds is not None
    alive, diverged = _seeds_alive(config, state, folder) if multi else (None, {})
    compiled: dict[int, Any] = {}
    started = time.perf_counter()
    postfix: dict[str, str] = {}
    with tqdm(
        total=config.num_steps,
        initial=_steps_done(state),
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
        desc=f"{config.algorithm} {config.dataset}",
    ) as bar:
        while (done := _steps_done(state)) < config.num_steps and not (
            best and best_lib.stop_reason(best, config.early_stop)
        ):
            length = min(
                config.steps_per_call - done % config.steps_per_call, config.num_steps - done
            )
            if length not in compiled:
                bar.set_description_str(f"compiling {length} steps")
                compile_ = seeds_lib.compile_seed_steps if multi else compile_steps
                compiled[length] = compile_(
                    step, problem.train, config.meta_batch_size, length, state, train_key, mesh
                )
                bar.set_description_str(f"{config.algorithm} {config.dataset}")
            tick = time.perf_counter()
            inputs = (state, train_key) + ((alive,) if multi else ())
            state, metrics = compiled[length](*inputs, problem.train.data)
            metrics = jax.device_get(metrics)
            seconds = time.perf_counter() - tick
            folder.started()  # its first call ran: a run it replaced can go
            if multi:  # each seed logged, and frozen if it failed
                record = _seed_records(config, done, length, metrics, alive, diverged, log,
                                       ckpts, folder, seconds, started)  # fmt: skip
                applied = length
            else:
                finite = np.asarray(metrics.pop("finite"))
                applied = int(finite.argmin()) if not finite.all() else length
                if applied:
                    record = {k: float(np.mean(v[:applied])) for k, v in metrics.items()}
                    record["tasks_per_s"] = applied * config.meta_batch_size / seconds
                    record["seconds"] = time.perf_counter() - started
                    log.write({"split": "train", "step": done + applied, **record})
            if applied:
                bar.update(applied)
                postfix.update(_postfix(record, config))
                bar.set_postfix(postfix, refresh=False)
            if applied < length:
                _diverged(config, done + applied, metrics, applied, ckpts, folder)
            done = _steps_done(state)
            if config.eval_interval and done % config.eval_interval == 0 and problem.val:
                scores = (
                    _validate_seeds(config, test_learner, state, alive, problem.val, mesh, log)
                    if multi
                    else validate(config, test_learner, state.meta_params, problem.val, mesh=mesh)
                )
                if not multi:
                    log.write(_record("val", done, scores, inner_steps=config.test_inner_steps[0]))
                postfix.update(_postfix({k: v.mean for k, v in scores.items()}, config, "val "))
                bar.set_postfix(postfix)
                if best is not None:
                    best = _track_best(config, done, scores, best, state, folder)
            at_interval = config.checkpoint_interval and done % config.checkpoint_interval == 0
            if at_interval or done == config.num_steps:
                _save(config, done, state, ckpts, folder)
            if config.time_limit is not None and time.perf_counter() - started > config.time_limit:
                break  # the state reached is checkpointed below
    if ckpts.latest() != _steps_done(state):
        _save(config, _steps_done(state), state, ckpts, folder)
    return state, best, diverged


def _seeds_alive(config, state, folder) -> tuple[np.ndarray, dict[int, dict[str, Any]]]:
    """Which seeds train on, and what stopped the others (a resumed run's frozen seeds).

    A seed behind the others' step diverged earlier and stays frozen; the run
    record's entry says why.
    """
    steps = np.asarray(jax.device_get(state.step))
    alive = steps == steps.max()
    before = (folder.record or {}).get("diverged_seeds") or {}
    diverged = {
        seed: before.get(str(seed), {"step": int(steps[i]) + 1, "cause": "unknown"})
        for i, seed in enumerate(config.seeds)
        if not alive[i]
    }
    folder.update(diverged_seeds={str(k): v for k, v in diverged.items()})
    return alive, diverged


def _seed_records(
    config, done, length, metrics, alive, diverged, log, ckpts, folder, seconds, started
) -> dict[str, float]:
    """Log each live seed's steps of this call; freeze (and report) the seeds that failed.

    Updates ``alive`` and ``diverged`` in place; returns the mean over live
    seeds of their records, for the progress bar. Raises
    :class:`TrainingDiverged` when the tasks do not fit the model (every seed
    would fail) or when no seed is left.
    """
    finite = np.asarray(metrics.pop("finite"))
    kept = finite & np.asarray(metrics.pop("params_finite"))
    live = [i for i in range(len(config.seeds)) if alive[i]]
    applied = {i: int(kept[i].argmin()) if not kept[i].all() else length for i in live}
    timing = {
        "tasks_per_s": sum(applied.values()) * config.meta_batch_size / seconds,
        "seconds": time.perf_counter() - started,
    }
    records = []
    for i in live:
        seed, n = config.seeds[i], applied[i]
        if n:
            record = {k: float(np.mean(v[i, :n])) for k, v in metrics.items()}
            records.append(record)
            log.write({"split": "train", "step": done + n, "seed": seed, **record, **timing})
        if n == length:
            continue
        at_step = {name: v[i, n] for name, v in metrics.items()}
        if float(at_step.get("labels_valid", 1.0)) < 1:  # the tasks do not fit the model
            _diverged(config, done + n, {k: v[i] for k, v in metrics.items()}, n, ckpts, folder)
        cause = seeds_lib.divergence_cause({**at_step, "finite": finite[i, n]})
        alive[i] = False
        diverged[seed] = {"step": done + n + 1, "cause": cause, "meta_lr": config.meta_lr}
        folder.update(diverged_seeds={str(k): v for k, v in diverged.items()})
        warnings.warn(
            f"seed {seed}: meta-step {done + n + 1} was not applied: {cause}; seed {seed} is "
            f"frozen with its parameters after step {done + n}"
            + (", the other seeds continue." if alive.any() else "."),
            seeds_lib.SeedDiverged,
            stacklevel=4,
        )
    if not alive.any():
        which = ", ".join(f"seed {k} at meta-step {v['step']}" for k, v in diverged.items())
        raise TrainingDiverged(
            f"every seed diverged ({which}); training stopped and the checkpoints are kept. "
            f"Try a smaller --meta-lr ({config.meta_lr}) or --inner-lr ({config.inner_lr}) in "
            "a new run.",
            done,
            ckpts.latest(),
        )
    if not records:
        return {}
    return {k: float(np.mean([r[k] for r in records])) for k in records[0]} | timing


def _validate_seeds(config, learner, state, alive, split, mesh, log):
    """Validate each live seed (one record each); returns the mean scores, for the progress bar."""
    steps = np.asarray(jax.device_get(state.step))
    means: dict[str, list[float]] = {}
    for i, seed in enumerate(config.seeds):
        if not alive[i]:
            continue
        params = seeds_lib.seed_entry(state.meta_params, i)
        scores = validate(config, learner, params, split, mesh=mesh)
        log.write(_record("val", int(steps[i]), scores, inner_steps=config.test_inner_steps[0],
                          seed=seed))  # fmt: skip
        for name, est in scores.items():
            means.setdefault(name, []).append(est.mean)
    return {name: _Mean(float(np.mean(v))) for name, v in means.items()}


class _Mean(NamedTuple):
    mean: float


def _track_best(config, step: int, scores, best, state, folder):
    """The standing after this validation; with ``keep_best``, save a new best state."""
    best = best.update(step, float(scores[best.metric].mean))
    if config.keep_best and best.improved:
        _save(config, step, state, best_lib.best_checkpoints(folder.path), folder)
    return best


def _save(config: TrainConfig, step: int, state, ckpts: Checkpoints, folder) -> None:
    """Checkpoint a finite ``state``; a non-finite one stops the run (it is never saved)."""
    leaves = jax.tree.leaves(jax.device_get(state))
    if not all(np.isfinite(x).all() for x in leaves if np.issubdtype(x.dtype, np.inexact)):
        folder.update(diverged={"step": step, "meta_lr": config.meta_lr,
                                "last_good": ckpts.latest()})  # fmt: skip
        raise TrainingDiverged(
            f"meta-step {step} made the parameters (or optimizer state) non-finite: an update "
            f"overflowed; training stopped and this state was not saved. " + _advice(config, ckpts),
            step,
            ckpts.latest(),
        )
    if isinstance(folder, ReadOnlyFolder):
        return  # process 0 writes the checkpoints
    ckpts.save(step, state, made_by=made_by(config))
    if not folder.record.get("checkpointed"):
        folder.update(checkpointed=True)


def compile_steps(step, split: Split, meta_batch_size: int, length: int, state, key, mesh: Mesh):
    """Ahead-of-time compile ``length`` meta-steps, sampling included, data as an argument.

    :func:`jmeta.parallel.sharded_scan_steps` over ``mesh``. Returns ``(state,
    key, data) -> (state, metrics)`` with the state donated, for a state and
    data already on the mesh.
    """
    sample = jmeta.tasks.batch_sampler(split.sample, meta_batch_size)
    run: Any = parallel.sharded_scan_steps(step, sample, length, mesh)  # with .lower
    return run.lower(state, key, split.data).compile()


def _diverged(config, step: int, metrics, applied: int, ckpts: Checkpoints, folder) -> None:
    """Stop after meta-step ``step + 1`` went non-finite; keep only checkpoints that can go on."""
    at_step = {name: np.asarray(values)[applied] for name, values in metrics.items()}
    if float(at_step.get("labels_valid", 1.0)) < 1:
        # The tasks do not fit the model: not a step-size problem, and every checkpoint is good.
        raise TrainingDiverged(
            f"meta-step {step + 1} was skipped: {nonfinite_cause(at_step)}; training stopped "
            f"with the parameters after step {step}, and its checkpoints are kept. Check "
            f"--ways ({config.ways}) and --shots ({config.shots}) against the model.",
            step,
            ckpts.latest(),
        )
    loss = float(at_step["loss"])
    dropped = ""
    if ckpts.latest() == step:  # its next step is the one that failed, whatever the step size
        if not isinstance(folder, ReadOnlyFolder):
            ckpts.delete(step)
        dropped = f"Checkpoint {step} was deleted: its next step is the one that failed. "
    last = ckpts.latest()
    folder.update(diverged={"step": step + 1, "meta_lr": config.meta_lr, "last_good": last})
    raise TrainingDiverged(
        f"meta-step {step + 1} gave a non-finite meta-loss or meta-gradient (loss = {loss}); "
        f"training stopped with the parameters after step {step}. {dropped}"
        + _advice(config, ckpts),
        step,
        last,
    )


def _advice(config: TrainConfig, ckpts: Checkpoints) -> str:
    last = ckpts.latest()
    where = (
        f"from checkpoint {last} in {ckpts.directory}, the last state training can continue from"
        if last is not None
        else "from step 0 (no checkpoint precedes the divergence)"
    )
    return (
        f"Try a smaller --meta-lr ({config.meta_lr}): `--resume --meta-lr "
        f"{config.meta_lr / 10:g}` continues {where}; a smaller --inner-lr "
        f"({config.inner_lr}) needs a new run (--overwrite, or another --output-dir)."
    )


def _record(split: str, step: int, scores, **extra) -> dict[str, Any]:
    record: dict[str, Any] = {"split": split, "step": step, **extra}
    for name, est in scores.items():
        record[name] = est.mean
        record[f"{name}_ci95"] = est.ci95
    return record


def _postfix(values: dict[str, float], config: TrainConfig, prefix: str = "") -> dict[str, str]:
    out = {}
    if "accuracy" in values:
        out[f"{prefix}acc"] = f"{values['accuracy']:.3f}"
    out[f"{prefix}{'mse' if config.is_regression else 'loss'}"] = f"{values['loss']:.3f}"
    if "tasks_per_s" in values:
        out["tasks/s"] = f"{values['tasks_per_s']:.0f}"
    return out


def _title(config: TrainConfig) -> str:
    if config.is_regression:
        return f"{config.algorithm}, sinusoid, {config.shots}-shot"
    ways = f"{config.ways}-way"
    if config.test_ways != config.ways:
        ways = f"{config.ways}-way training, {config.test_ways}-way validation and test,"
    return f"{config.algorithm}, {config.dataset}, {ways} {config.shots}-shot"
