"""The evaluation protocol: mean and 95% confidence interval over fixed tasks.

Every algorithm is scored on the same tasks: task ``i`` is drawn from
``jax.random.fold_in(jax.random.key(seed), i)``, so a seed names a task set
independently of batch sizes and device counts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jmeta.types import MetaLearner, MetaParams, Task
from jmeta.validation import check_positive_int

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


class Estimate(NamedTuple):
    """A mean with the half-width of its 95% confidence interval."""

    mean: float
    ci95: float
    num: int

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.ci95:.2g}"


def mean_ci(values) -> Estimate:
    r"""Mean and 95% normal-approximation confidence half-width.

    :math:`\bar v \pm 1.96\, s / \sqrt{n}` with :math:`s` the sample standard
    deviation with Bessel's correction (``ddof=1``, divisor :math:`n - 1`):
    the usual estimate of the spread of the population the :math:`n` test
    tasks are drawn from, and the one a t- or z-interval for a mean uses.
    Published few-shot code is not uniform here: MAML's released code, for
    one, calls ``np.std`` with NumPy's default ``ddof=0``. The two differ by
    the factor :math:`\sqrt{n / (n - 1)}`, 1.0008 for 600 tasks, far below
    the interval's own sampling error. ``n = 1`` gives a NaN half-width.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("mean_ci needs at least one value.")
    half = Z_95 * v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else float("nan")
    return Estimate(float(v.mean()), float(half), int(v.size))


def task_keys(seed: int, num_tasks: int) -> jax.Array:
    """The keys of the fixed evaluation task set named by ``seed``."""
    base = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(np.arange(num_tasks))


def evaluate(
    learner: MetaLearner,
    meta_params: MetaParams,
    sample_task: Callable[..., Task],
    *,
    num_tasks: int = 600,
    seed: int = 0,
    num_steps: int | None = None,
    batch_size: int = 100,
    data: Any = None,
    mesh: Mesh | None = None,
) -> dict[str, Estimate]:
    """Score ``meta_params`` on ``num_tasks`` fixed tasks.

    Args:
      learner: the algorithm.
      meta_params: its meta-parameters.
      sample_task: a task sampler ``(key, data) -> Task``, one task per key
        (e.g. ``functools.partial(jmeta.tasks.sinusoid, num_support=10)``).
      num_tasks: 600 by convention.
      seed: names the task set.
      num_steps: inner steps at test time (``None``: the training value).
      batch_size: tasks evaluated at once (bounds memory; no effect on results).
      data: the pytree of arrays passed as ``sample_task(key, data)`` (``None``
        if the sampler needs none), an argument of the compiled evaluation.
        Arrays closed over by ``sample_task`` would be compiled into the
        program as constants instead, which is slow for a data set of more
        than a few megabytes.
      mesh: a 1-D device mesh (:func:`jmeta.parallel.task_mesh`) over which
        each batch of ``batch_size`` tasks is split (``batch_size`` must be
        a multiple of its size); ``None``: the default device. The scores do
        not depend on it beyond float rounding.

    Returns:
      ``{metric: Estimate}``, e.g. ``{"loss": ..., "loss_before": ...,
      "accuracy": ...}``.

    Raises:
      ValueError: the learner reports (``labels_valid``) that some task's
        labels do not fit it.

    Example:
      >>> import functools, jax, jmeta
      >>> model = jmeta.models.mlp((1, 40, 40, 1))
      >>> learner = jmeta.maml(model.apply, jmeta.losses.mse, inner_lr=0.01)
      >>> theta = learner.init(model.init(jax.random.key(0)))
      >>> scores = jmeta.evaluate(learner, theta, jmeta.tasks.sinusoid, num_tasks=50)
      >>> sorted(scores)
      ['loss', 'loss_before']
    """
    num_tasks = check_positive_int("num_tasks", num_tasks)
    batch_size = check_positive_int("batch_size", batch_size)
    if mesh is None:
        batch_size = min(batch_size, num_tasks)
    elif len(mesh.axis_names) != 1 or batch_size % mesh.size:
        raise ValueError(
            f"batch_size={batch_size} must be a multiple of the {mesh.size} devices of "
            f"mesh (a 1-D mesh; got axes {mesh.axis_names}), so that every device "
            "evaluates the same number of tasks."
        )
    run = _evaluate_all(learner, sample_task, num_steps, batch_size, num_tasks, mesh)
    keys = task_keys(seed, -(-num_tasks // batch_size) * batch_size)  # whole batches
    # As host values, which jit places wherever the mesh is (several processes too).
    raw_keys = np.asarray(jax.random.key_data(keys))
    per_task = jax.device_get(run(meta_params, raw_keys, data))
    per_task = {name: np.asarray(v)[:num_tasks] for name, v in per_task.items()}
    valid = per_task.pop("labels_valid", None)
    if valid is not None and not np.all(valid):
        bad = np.flatnonzero(~np.asarray(valid, bool))
        raise ValueError(
            f"sample_task gave {bad.size} of {num_tasks} tasks whose labels do not fit the "
            f"learner (first: task {int(bad[0])}): a label outside [0, number of classes) "
            "(the model's outputs, or the learner's num_classes/shots) or a class without "
            "its support examples. Check the tasks' ways and shots against the learner."
        )
    return {name: mean_ci(values) for name, values in per_task.items()}


@functools.lru_cache(maxsize=32)  # one compilation per (learner, sampler, steps, ...)
def _evaluate_all(learner, sample_task, num_steps, batch_size, num_tasks, mesh):
    """A jitted ``(meta_params, keys, data) -> per-task metrics`` over whole batches.

    The keys (a multiple of ``batch_size``, the tasks past ``num_tasks`` only
    padding) are evaluated ``batch_size`` at a time (``vmap``), one batch
    after another (``lax.map``), each batch split over ``mesh`` if given.
    """

    def one(meta_params, key, data):
        task_key, eval_key = jax.random.split(key)
        return learner.evaluate(meta_params, sample_task(task_key, data), eval_key, num_steps)

    def batch(meta_params, keys, data):
        if mesh is not None:
            keys = jax.lax.with_sharding_constraint(
                keys, NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
            )
        return jax.vmap(lambda k: one(meta_params, k, data))(keys)

    def run(meta_params, raw_keys, data):
        batches = jax.random.wrap_key_data(raw_keys).reshape(-1, batch_size)
        per_batch = jax.lax.map(lambda k: batch(meta_params, k, data), batches)
        return jax.tree_util.tree_map(lambda v: v.reshape(-1, *v.shape[2:]), per_batch)

    if mesh is None:
        return jax.jit(run)
    return jax.jit(run, out_shardings=NamedSharding(mesh, PartitionSpec()))
