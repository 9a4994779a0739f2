r"""Whether a meta-batch fits in memory: an estimate from shapes, before anything compiles.

A meta-step holds at least the training state (meta-parameters and optimizer
state), one meta-gradient and, for each task of the meta-batch, the sampled
task and the parameters its inner loop adapts (the leaves that ``adapt``
changes; ANIL's body is shared, not copied per task). Activations are not
counted, so the estimate stays below what the step needs (a test checks it
against XLA's own memory analysis): a configuration whose estimate exceeds
the memory available cannot run, one below it still may not fit.

The estimate is per device. The trainer splits each meta-batch (and each
batch of evaluation tasks) over the :math:`D` devices of its mesh
(:mod:`jmeta.train.devices`) and replicates the state and the data set on
each, so one device holds

.. math::

   \text{data} + S \left(\text{state} + \lceil B / D \rceil \cdot \text{per task}\right)

for a meta-batch of :math:`B` tasks and :math:`S` seeds trained together
(``--seeds``; one otherwise).

Computed with ``jax.eval_shape`` and ``jax.make_jaxpr`` on one task, in
milliseconds; nothing is compiled or allocated.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import jax
import numpy as np

from jmeta.step import MetaTrainStep
from jmeta.train.config import ConfigValueError, TrainConfig
from jmeta.train.problem import Problem
from jmeta.types import MetaLearner, Model, Task


class StepMemory(NamedTuple):
    """Bytes a meta-step holds at least, without activations.

    Attributes:
      state: the training state and one meta-gradient.
      task: one sampled task (support and query, as the sampler returns them).
      adapted: one task's adapted parameters.
      meta_params: the meta-parameters alone (what evaluation holds).
      results: one evaluated task's key and metrics (evaluation keeps them all).
      data: the data set the sampler reads (on every device); 0 if none.
    """

    state: int
    task: int
    adapted: int
    meta_params: int
    results: int
    data: int = 0

    def per_task(self) -> int:
        return self.task + self.adapted

    def meta_step(self, meta_batch_size: int, devices: int = 1, seeds: int = 1) -> int:
        """Bytes on each device of a meta-step over ``meta_batch_size`` tasks split over
        ``devices`` (lower estimate): the state and data, and ``ceil(B / D)`` tasks; with
        ``seeds`` runs in one program (``--seeds``), a state and the tasks per seed."""
        share = self.state + -(-meta_batch_size // devices) * self.per_task()
        return self.data + seeds * share

    def evaluation(self, batch_size: int, num_tasks: int, devices: int = 1) -> int:
        """Bytes on each device of scoring ``num_tasks`` tasks, ``batch_size`` at a time, each
        batch split over ``devices`` (lower estimate)."""
        return (
            self.meta_params
            + self.data
            + -(-min(batch_size, num_tasks) // devices) * self.per_task()
            + -(-num_tasks // devices) * self.results
        )


def estimate_step_memory(
    step: MetaTrainStep, learner: MetaLearner, model: Model, sample: Any, data: Any
) -> StepMemory:
    """The :class:`StepMemory` of ``step`` on tasks from ``sample(key, data)``.

    Args:
      step: the meta-step (its ``init`` gives the state's shapes).
      learner: the algorithm; ``adapt`` is traced on one task.
      model: the network (``init`` gives the parameters' shapes).
      sample: ``(key, data) -> Task``.
      data: the sampler's data (arrays or ``()``).

    Example:
      >>> import functools, jax, optax, jmeta
      >>> from jmeta.train.memory import estimate_step_memory
      >>> model = jmeta.models.mlp((1, 40, 40, 1))
      >>> learner = jmeta.maml(model.apply, jmeta.losses.mse, inner_lr=0.01)
      >>> step = jmeta.meta_train_step(learner, optax.sgd(1e-3))
      >>> sample = lambda key, data: jmeta.tasks.sinusoid(key)
      >>> est = estimate_step_memory(step, learner, model, sample, ())
      >>> est.task, est.adapted  # 20 points (x, y) and 1,761 float32 parameters
      (160, 7044)
    """
    key = jax.eval_shape(lambda: jax.random.key(0))
    meta_params = jax.eval_shape(lambda k: learner.init(model.init(k)), key)
    state = jax.eval_shape(step.init, meta_params)
    task: Task = jax.eval_shape(sample, key, data)
    adapt = jax.make_jaxpr(lambda p, s, k: learner.adapt(p, s, k))(meta_params, task.support, key)
    inputs = {id(v) for v in adapt.jaxpr.invars}
    # The leaves adapt returns unchanged are its inputs, shared by all tasks.
    adapted = sum(_bytes(v.aval) for v in adapt.jaxpr.outvars if id(v) not in inputs)
    results = jax.eval_shape(lambda p, t, k: learner.evaluate(p, t, k), meta_params, task, key)
    return StepMemory(
        state=_tree_bytes(state) + _tree_bytes(meta_params),
        task=_tree_bytes(task),
        adapted=adapted,
        meta_params=_tree_bytes(meta_params),
        results=_tree_bytes(results) + _tree_bytes(key),
        data=_tree_bytes(data),
    )


def available_bytes(device: jax.Device | None = None) -> int | None:
    """Memory free for arrays on ``device`` (default: the first), or ``None`` if unknown.

    An accelerator reports its limit and use; for the CPU the host's available
    memory (``MemAvailable`` of ``/proc/meminfo``, else free physical pages).
    """
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    if device.platform != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(
    config: TrainConfig,
    problem: Problem,
    step: MetaTrainStep,
    learner: MetaLearner,
    *,
    available: int | None = None,
    device: jax.Device | None = None,
    devices: int = 1,
) -> StepMemory | None:
    """Refuse a configuration whose meta-step or test clearly cannot fit in memory.

    Args:
      config, problem, step, learner: the run's.
      available: bytes available on one device (default: :func:`available_bytes`
        of ``device``).
      device: a device the run computes on (default: the first device).
      devices: how many devices each meta-batch is split over (the mesh's
        size, every process's devices together); each holds its share of
        the tasks and a copy of the state and data.

    Returns:
      The estimate, or ``None`` when the available memory is unknown.

    Raises:
      ConfigValueError: naming ``meta_batch_size`` (or ``eval_tasks``/``val_tasks``)
        with the estimate and the memory available.
    """
    device = device or jax.local_devices()[0]
    available = available_bytes(device) if available is None else available
    if available is None or problem.train is None:
        return None
    where = f"{device.platform}:{device.id}"
    train = problem.train
    splits = [s for s in (problem.train, problem.val, problem.test) if s is not None]
    data = sum(_tree_bytes(s.data) for s in splits)  # every split is on every device
    est = estimate_step_memory(step, learner, problem.model, train.sample, train.data)
    est = est._replace(data=data)
    seeds = len(config.seeds) if config.seeds else 1
    need = est.meta_step(config.meta_batch_size, devices, seeds)
    if need > available:
        split = f", {-(-config.meta_batch_size // devices)} tasks on each of {devices} devices"
        split += f", for each of {seeds} seeds" if seeds > 1 else ""
        raise ConfigValueError(
            "{0} {size} needs at least an estimated {need} per meta-step{on} ({per} per task for "
            "its inputs and adapted parameters{split}; activations not counted), more than the "
            "{free} available on {where}; lower {0}.",
            ["meta_batch_size"], size=config.meta_batch_size, need=_size(need),
            per=_size(est.per_task()), free=_size(available), where=where,
            on=" per device" if devices > 1 else "",
            split=split if devices > 1 or seeds > 1 else "",
        )  # fmt: skip
    for name, scored_split in (("eval_tasks", problem.test), ("val_tasks", problem.val)):
        if scored_split is None:
            continue
        num = getattr(config, name)
        scored = estimate_step_memory(
            step, learner, problem.model, scored_split.sample, scored_split.data
        )
        need = scored._replace(data=data).evaluation(config.meta_batch_size, num, devices)
        if need > available:
            raise ConfigValueError(
                "{0} {num} needs at least an estimated {need}{on} to score ({results} per task "
                "for its key and scores, {batch} tasks at a time{split}), more than the {free} "
                "available on {where}.", [name], num=num, need=_size(need),
                results=_size(scored.results), batch=min(config.meta_batch_size, num),
                free=_size(available), where=where, on=" per device" if devices > 1 else "",
                split=f" split over {devices} devices" if devices > 1 else "",
            )  # fmt: skip
    return est


def _bytes(aval: Any) -> int:
    dtype = aval.dtype
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):  # typed keys: their raw data
        raw = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0)))
        itemsize = math.prod(raw.shape) * raw.dtype.itemsize
    else:
        itemsize = np.dtype(dtype).itemsize
    return int(math.prod(aval.shape)) * itemsize


def _tree_bytes(tree: Any) -> int:
    return sum(_bytes(leaf) for leaf in jax.tree.leaves(tree))


def _size(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
