"""Scoring: validation during a run, the fixed test tasks, and saved checkpoints.

Test task ``i`` is drawn from ``fold_in(key(eval_seed), i)`` (see
:func:`jmeta.evaluate`), so every algorithm and every checkpoint of a data set
is scored on the same tasks; validation uses the task set ``eval_seed + 1``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import jmeta
from jmeta.train import outputs
from jmeta.train.algorithms import ALGORITHMS
from jmeta.train.best import BEST, best_checkpoints
from jmeta.train.build import build_learners, meta_optimizer, run_state
from jmeta.train.checkpoint import Checkpoints, CheckpointWarning
from jmeta.train.compilation_cache import enable_compilation_cache
from jmeta.train.config import NO_SPLIT, ConfigError, ConfigValueError, TrainConfig
from jmeta.train.devices import to_mesh, train_mesh
from jmeta.train.problem import Split, build_problem
from jmeta.train.results import Scores
from jmeta.train.resume import expected
from jmeta.train.seeds import seed_entry, seed_index
from jmeta.types import MetaLearner


def validate(config: TrainConfig, learner: MetaLearner, meta_params, split: Split, *, mesh=None):
    """Scores on ``val_tasks`` validation tasks (seed ``eval_seed + 1``), first test-time steps.

    Like the test, ``meta_batch_size`` tasks are evaluated at a time (a bound on
    memory, which matters on CPU: im2col convolutions copy each activation 9
    times); the scores do not depend on it. ``mesh``: the devices each batch
    is split over (see :func:`jmeta.evaluate`).
    """
    return jmeta.evaluate(
        learner,
        meta_params,
        split.sample,
        num_tasks=config.val_tasks,
        seed=config.eval_seed + 1,
        num_steps=config.test_inner_steps[0],
        batch_size=config.meta_batch_size,
        data=split.data,
        mesh=mesh,
    )


def test_scores(
    config: TrainConfig, learner: MetaLearner, meta_params, split: Split, *, mesh=None
) -> Scores:
    """Scores on the ``eval_tasks`` fixed test tasks, once per ``test_inner_steps`` entry."""
    return {
        k: jmeta.evaluate(
            learner,
            meta_params,
            split.sample,
            num_tasks=config.eval_tasks,
            seed=config.eval_seed,
            num_steps=k,
            batch_size=config.meta_batch_size,
            data=split.data,
            mesh=mesh,
        )
        for k in config.test_inner_steps
    }


#: The config fields that :func:`evaluate_checkpoint`'s arguments set.
_ARGUMENTS = {
    "eval_tasks": "num_tasks",
    "eval_seed": "seed",
    "test_inner_steps": "inner_steps",
    "test_ways": "ways",
    "ways": "the run's training ways",
}


def find_run(path: str | Path) -> tuple[Path, int | None]:
    """The run folder and checkpoint step that ``path`` names (see ``locate_checkpoint``)."""
    found = locate_checkpoint(path)
    return found.run_dir, found.step


class CheckpointRef(NamedTuple):
    """A checkpoint that a path names.

    Attributes:
      run_dir: the run folder.
      directory: the checkpoints folder (``checkpoints/`` or ``best/``).
      step: the step named, or ``None`` for the newest intact one.
      best: whether it is the run's best checkpoint by validation score.
    """

    run_dir: Path
    directory: Path
    step: int | None
    best: bool


def locate_checkpoint(path: str | Path) -> CheckpointRef:
    """The checkpoint that ``path`` names.

    ``path`` may be a run folder (its best checkpoint by validation score if
    the run kept one, ``--keep-best``; otherwise its newest), its
    ``checkpoints/`` folder (the newest), one ``checkpoints/<step>/`` folder,
    or its ``best/`` folder.
    """
    path = Path(path)
    names = (outputs.CHECKPOINTS, BEST)
    if path.name.isdigit() and path.parent.name in names:
        return CheckpointRef(path.parent.parent, path.parent, int(path.name),
                             path.parent.name == BEST)  # fmt: skip
    if path.name in names:
        return CheckpointRef(path.parent, path, None, path.name == BEST)
    best = best_checkpoints(path)
    if best.newest_intact()[0] is not None:
        return CheckpointRef(path, best.directory, None, True)
    if best.steps():
        warnings.warn(
            f"the best checkpoint in {best.directory} is damaged; using the newest intact "
            "checkpoint instead.",
            CheckpointWarning,
            stacklevel=2,
        )
    return CheckpointRef(path, path / outputs.CHECKPOINTS, None, False)


def evaluate_checkpoint(
    path: str | Path,
    *,
    split: str = "test",
    num_tasks: int | None = None,
    seed: int | None = None,
    inner_steps: tuple[int, ...] | None = None,
    data_dir: str | None = None,
    run_seed: int | None = None,
    ways: int | None = None,
) -> tuple[Scores, int]:
    """Score a checkpoint on fixed tasks of its run's test (or validation) split.

    Args:
      path: a run folder (its best checkpoint by validation score if it kept
        one, else its newest), its ``checkpoints/`` or ``best/`` folder, or one
        checkpoint folder (see ``jmeta.train.scoring.locate_checkpoint``).
      split: ``"test"`` or ``"val"``.
      num_tasks: tasks (default: the run's ``eval_tasks``, 600).
      seed: names the task set (default: the run's ``eval_seed``, so the same
        tasks the run was tested on).
      inner_steps: test-time inner steps (default: the run's ``test_inner_steps``).
      data_dir: where the data are, if they moved.
      run_seed: which seed of a run of several (``jmeta train --seeds``) to
        score; required for such a run (``jmeta eval`` scores each), left out
        for a run of one.
      ways: classes per task (default: the run's ``test_ways``); a metric
        learner takes any number (ProtoNets trained 60-way, tested 5- and
        20-way), a learner with a head at most its training ``ways``.

    Returns:
      ``({inner steps: {metric: Estimate}}, checkpoint step)`` (of the seed
      scored: a seed that diverged stopped earlier than the checkpoint).

    The newest checkpoint is the newest intact one (a damaged newer one is
    skipped with a :class:`~jmeta.train.CheckpointWarning`). No lock
    is taken, so a run that is still training can be scored: ``config.json`` is
    replaced atomically and a complete checkpoint is never modified, only
    deleted, which the restore notices (and then reads the newest again).

    Raises:
      ConfigValueError, ConfigTypeError: a bad argument (the message names it).
      ValueError, FileNotFoundError: a bad ``split`` or ``path``.
      CheckpointDamaged: the checkpoint named (or every one) is damaged.
      CheckpointMismatch: the checkpoint was made by another algorithm or
        configuration than the run's ``config.json`` says.
    """
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val'; got {split!r}.")
    found = locate_checkpoint(path)
    run_dir, step = found.run_dir, found.step
    config = outputs.saved_config(run_dir)
    index = seed_index(config, run_seed, run_dir)
    enable_compilation_cache()
    overrides = {"data_dir": data_dir, "eval_tasks": num_tasks, "eval_seed": seed,
                 "test_inner_steps": inner_steps, "test_ways": ways}  # fmt: skip
    try:  # checks the overrides; errors name this function's arguments
        config = config.replace(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as err:
        raise err.renamed(_ARGUMENTS) from None
    if split == "val" and config.val_split == NO_SPLIT:
        raise ValueError(f"the run in {run_dir} has no validation split.")
    needs_train = ALGORITHMS[config.algorithm].pretraining  # its head's size: training classes
    try:
        problem = build_problem(config, splits=(split, "train") if needs_train else (split,))
    except ConfigError as err:
        raise err.renamed(_ARGUMENTS) from None
    train_learner, test_learner = build_learners(config, problem)
    step_fns = jmeta.meta_train_step(train_learner, meta_optimizer(config))
    like, _ = run_state(step_fns, train_learner, problem.model, config, abstract=True)
    with Checkpoints(found.directory, keep=config.keep_checkpoints) as ckpts:
        state = ckpts.restore(like=like, step=step, expect=expected(config))
    if index is not None:
        state = seed_entry(state, index)
    target = problem.test if split == "test" else problem.val
    assert target is not None  # loaded above
    params, mesh = state.meta_params, _run_mesh(config)
    if mesh is not None:  # the run's own devices: its final test, bit for bit
        target = target._replace(data=to_mesh(target.data, mesh))
        params = to_mesh(params, mesh)
    return test_scores(config, test_learner, params, target, mesh=mesh), int(state.step)


def _run_mesh(config: TrainConfig):
    """The devices the run tested on (``config.devices``), or ``None`` (one) if they don't fit.

    On the run's mesh, scores equal the trainer's final test bit for bit and the
    program is the one the trainer compiled (a persistent-cache hit); on another
    machine they agree to float rounding (docs/scaling.md).
    """
    try:
        return train_mesh(config)
    except ConfigValueError:
        return None
