r"""Several seeds as one run: one compiled program, ``vmap`` over a leading seed axis.

``TrainConfig(seeds=(0, 1, 2, 3))`` (``jmeta train --seeds 0 1 2 3``) trains
four runs at once. The state (parameters, optimizer state, step counter) and
the training key gain a leading axis of one entry per seed, and each compiled
call is the single-seed call (:func:`jmeta.parallel.sharded_scan_steps`)
under ``jax.vmap``: seed ``k``'s state starts as a run with ``seed=k`` starts,
and its step ``s`` draws its tasks from ``fold_in(train_key_k, s)``, as that
run's does. The results equal separate single-seed runs to float rounding
(``vmap`` turns matrix products into batched ones, which may sum in another
order; docs/training.md states the tolerance the tests check).

A seed whose meta-step is not finite (loss, gradient, or the updated
parameters) is frozen inside the compiled step: a ``where`` on a per-seed mask
keeps its last finite state while the others continue. The loop reports it
(:class:`SeedDiverged`) from the metrics it already reads after each call.

Across seeds, each test score is summarised by its mean and its sample
standard deviation (divisor :math:`n - 1`) over the seeds that did not diverge:

.. math:: \bar m = \frac{1}{n}\sum_{k} m_k, \qquad
   s = \sqrt{\frac{1}{n - 1}\sum_k (m_k - \bar m)^2}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

import jmeta
from jmeta import parallel
from jmeta.train.config import ConfigValueError, TrainConfig
from jmeta.train.results import Scores, scores_to_json


class SeedDiverged(UserWarning):
    """One seed of a run of several went non-finite; it is frozen, the others continue."""


class Spread(NamedTuple):
    """A score across seeds: mean and sample standard deviation (``ddof=1``; NaN for one seed).

    Attributes:
      mean: the mean over seeds of each seed's mean score.
      std: their sample standard deviation (divisor ``num - 1``).
      num: the number of seeds.
    """

    mean: float
    std: float
    num: int


class SeedResults(NamedTuple):
    """The seeds of a run of several (:attr:`TrainResult.seeds <jmeta.train.TrainResult>`).

    Attributes:
      test: ``{seed: {test-time inner steps: {metric: Estimate}}}``, in the
        order of ``config.seeds``, of the seeds that did not diverge.
      steps: ``{seed: meta-steps it took}`` (fewer for a seed that diverged).
      diverged: ``{seed: {"step": the step that failed, "cause": ...}}`` of
        the seeds that were frozen (not tested: their last finite parameters are
        those of a run about to fail).
    """

    test: dict[int, Scores]
    steps: dict[int, int]
    diverged: dict[int, dict[str, Any]]

    def across(self) -> dict[int, dict[str, Spread]]:
        """``{inner steps: {metric: Spread}}`` over the seeds that did not diverge."""
        return across_seeds(self.test)


def spread(values: Sequence[float]) -> Spread:
    """:class:`Spread` of ``values`` (one per seed).

    Example:
      >>> from jmeta.train.seeds import spread
      >>> spread([0.5, 0.7, 0.6])
      Spread(mean=0.6, std=0.09999999999999998, num=3)
    """
    v = np.asarray(values, np.float64)
    std = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return Spread(float(v.mean()), std, int(v.size))


def across_seeds(per_seed: Mapping[int, Scores]) -> dict[int, dict[str, Spread]]:
    """``{inner steps: {metric: Spread}}`` of the seeds' mean scores."""
    runs = list(per_seed.values())
    if not runs:
        return {}
    return {
        steps: {name: spread([r[steps][name].mean for r in runs]) for name in metrics}
        for steps, metrics in runs[0].items()
    }


def seed_entry(tree: Any, index: int) -> Any:
    """Entry ``index`` of every leaf's leading seed axis."""
    return jax.tree.map(lambda x: x[index], tree)


def compile_seed_steps(step, split, meta_batch_size: int, length: int, state, keys, mesh: Mesh):
    """Ahead-of-time compile ``length`` meta-steps of every seed, ``vmap`` over the seed axis.

    Returns ``(state, keys, alive, data) -> (state, metrics)``: ``state`` and
    ``keys`` with a leading seed axis, ``alive`` a boolean per seed (``False``:
    frozen, its state never changes); the metrics have axes ``[seed, step]``
    and add ``params_finite``. A seed's update is kept only when it is alive,
    its loss and gradient are finite and so are its updated parameters and
    optimizer state, so a seed that fails keeps its last finite state.
    """
    sample = jmeta.tasks.batch_sampler(split.sample, meta_batch_size)

    def one(state, key, alive, data):
        def body(state, _):  # jmeta.scan_steps' body, with the tasks on the mesh
            task_key, step_key = jax.random.split(jax.random.fold_in(key, state.step))
            tasks = parallel.constrain_tasks(sample(task_key, data), mesh)
            new, metrics = step.update(state, tasks, step_key)
            params_finite = _all_finite(new)
            keep = alive & metrics["finite"] & params_finite
            new = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, state)
            return new, {**metrics, "params_finite": params_finite}

        return jax.lax.scan(body, state, None, length=length)

    rep = parallel.replicated(mesh)
    run = jax.jit(
        jax.vmap(one, in_axes=(0, 0, 0, None)), out_shardings=(rep, rep), donate_argnums=0
    )
    alive = np.ones(len(jax.tree.leaves(state)[0]), bool)
    return run.lower(state, keys, alive, split.data).compile()


def _all_finite(tree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves]))


def divergence_cause(metrics: Mapping[str, Any]) -> str:
    """Why one seed's step was not kept, in words (metrics of that seed and step, host values)."""
    if not bool(metrics["finite"]):
        return jmeta.step.nonfinite_cause(dict(metrics))
    return "the update made the parameters (or optimizer state) non-finite"


def results_json(
    seeds: Sequence[int],
    steps: Mapping[int, int],
    test: Mapping[int, Scores],
    diverged: Mapping[int, Mapping[str, Any]],
) -> dict[str, Any]:
    """``results.json`` of a run of several seeds.

    ``{"seeds": {"0": {"step": 20, "test": {...}}, "1": {"step": 6, "diverged": {...}}},
    "across_seeds": {"seeds": [0], "test": {"1": {"loss": {"mean", "std", "num"}}}}}``:
    each seed's test scores (mean, 95% interval, tasks), or for a seed that
    diverged, the step that failed and why; then the mean and sample standard
    deviation of the scores across the seeds tested (``std`` is ``null`` for
    one seed).
    """  # fmt: skip
    per_seed: dict[str, Any] = {}
    for seed in seeds:
        entry: dict[str, Any] = {"step": int(steps[seed])}
        if seed in diverged:
            entry["diverged"] = dict(diverged[seed])
        else:
            entry["test"] = scores_to_json(test[seed])
        per_seed[str(seed)] = entry
    kept = [s for s in seeds if s not in diverged]
    across = across_seeds({s: test[s] for s in kept})
    return {
        "step": max(int(v) for v in steps.values()),
        "seeds": per_seed,
        "across_seeds": {
            "seeds": kept,
            "std": "sample standard deviation (n - 1) of the seeds' means",
            "test": {
                str(k): {
                    name: {
                        "mean": s.mean,
                        "std": None if math.isnan(s.std) else s.std,
                        "num": s.num,
                    }  # fmt: skip
                    for name, s in metrics.items()
                }
                for k, metrics in across.items()
            },
        },
    }


def format_seed_scores(
    test: Mapping[int, Scores],
    diverged: Mapping[int, Mapping[str, Any]],
    *,
    regression: bool,
    header: str = "",
) -> str:
    """One row per seed and test-time step count (mean ± 95% interval), then one row per step
    count with the mean ± sample standard deviation across the seeds that did not diverge."""
    name, label = ("loss", "MSE") if regression else ("accuracy", "accuracy")
    scale, digits = (1.0, 4) if regression else (100.0, 2)
    unit = "" if regression else "%"

    def fmt(mean: float, half: float) -> str:
        plus = "" if math.isnan(half) else f" ± {scale * half:.{digits}f}{unit}"
        return f"{scale * mean:.{digits}f}{unit}{plus}"

    rows: list[tuple[str, ...]] = [
        ("seed", "inner steps", f"{label} before adaptation", f"{label} after adaptation")
    ]
    for seed, scores in test.items():
        for steps, metrics in sorted(scores.items()):
            cells = [
                fmt(metrics[m].mean, metrics[m].ci95) if m in metrics else "-"
                for m in (f"{name}_before", name)
            ]
            rows.append((str(seed), str(steps), *cells))
    for seed, why in diverged.items():
        rows.append((str(seed), "-", f"diverged at meta-step {why['step']}", "not tested"))
    for steps, spread in sorted(across_seeds(test).items()):
        cells = [
            fmt(spread[m].mean, spread[m].std) if m in spread else "-"
            for m in (f"{name}_before", name)
        ]
        rows.append((f"mean ± std ({len(test)})", str(steps), *cells))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [header] if header else []
    lines += ["  " + "   ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def seeds_header(header: str) -> str:
    """A single-seed table's header (``... mean ± 95% confidence interval``) for several seeds."""
    return header.replace("mean ± 95%", "per seed mean ± 95%") + (
        "; across seeds: mean ± sample standard deviation (n - 1)"
    )


def check_resume(saved: TrainConfig, config: TrainConfig, where: Any) -> None:
    """A resumed run trains the seeds it was started with: one line naming ``--seeds`` if not."""
    if saved.seeds == config.seeds:
        return
    fix = "without {0}" if saved.seeds is None else "with {0} {then}"
    raise ConfigValueError(
        "--resume: {0} {now} differs from the run's {0} {then} (saved in {where}); the seeds "
        "of a run cannot change: resume " + fix + ", or start a new run.", ["seeds"],
        now=_listed(config.seeds), then=_listed(saved.seeds), where=where,
    )  # fmt: skip


def _listed(seeds: tuple[int, ...] | None) -> str:
    return "none (one run)" if seeds is None else " ".join(map(str, seeds))


def seed_index(config: TrainConfig, run_seed: int | None, what: Any, name: str = "run_seed"):
    """The seed axis entry ``run_seed`` names in a run of several seeds (``None``: one seed).

    Raises:
      ConfigValueError: ``run_seed`` is missing for a run of several seeds,
        given for a run of one, or not one of its seeds (the message names ``name``).
    """
    if config.seeds is None:
        if run_seed is not None and run_seed != config.seed:
            raise ConfigValueError(
                "{0} {value}: the run in {what} trained seed {seed} alone; leave {0} out.",
                [name], value=run_seed, what=what, seed=config.seed,
            )  # fmt: skip
        return None
    listed = " ".join(map(str, config.seeds))
    if run_seed is None or run_seed not in config.seeds:
        got = "is missing" if run_seed is None else f"{run_seed} is not one of them"
        raise ConfigValueError(
            "{0} {got}: the run in {what} trained seeds {listed} together; pass {0} with one "
            "of them.", [name], got=got, what=what, listed=listed,
        )  # fmt: skip
    return config.seeds.index(run_seed)
