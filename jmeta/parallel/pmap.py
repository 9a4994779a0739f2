"""Meta-steps under ``jax.pmap``, for code written in the pmap style.

The same per-device step as :func:`~jmeta.parallel.shard_map_step` (built with
``jmeta.meta_train_step(..., axis_name="tasks")``: device-local gradients,
then ``lax.pmean``), mapped with ``jax.pmap``: state carries a leading device
axis (:func:`replicate_for_pmap`, :func:`unreplicate`), tasks are reshaped
``[T, ...] -> [D, T / D, ...]``. New code should prefer ``jit`` with shardings
(:func:`~jmeta.parallel.sharded_step`) or ``shard_map``, which JAX recommends
over ``pmap``; this path computes the same result for users who know ``pmap``.
(JAX 0.10 emits no deprecation warning for ``jax.pmap``.)

Unlike ``shard_map``, ``pmap`` does not type values as device-varying, so a
step built *without* ``axis_name`` is not caught: each device would silently
train on its own tasks only and the copies would drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from jmeta.parallel.mesh import TASKS, task_mesh
from jmeta.step import MetaTrainState, MetaTrainStep, check_step, per_task_keys
from jmeta.types import Metrics, PRNGKey, Task
from jmeta.validation import check_task

Update = Callable[[MetaTrainState, Task, PRNGKey], tuple[MetaTrainState, Metrics]]


def replicate_for_pmap(
    tree: Any, devices: Sequence[jax.Device] | None = None, *, axis_name: str = TASKS
) -> Any:
    """Stack ``len(devices)`` copies of every leaf along a new leading axis, one per device.

    The copies are placed the way ``jax.pmap`` places its outputs (row ``d`` on
    device ``d``), so the first call and the later ones share one trace.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    stacked = jax.tree_util.tree_map(
        lambda x: jnp.broadcast_to(x, (len(devices), *jnp.shape(x))), tree
    )
    return jax.device_put(
        stacked, NamedSharding(task_mesh(devices, axis_name), PartitionSpec(axis_name))
    )


def unreplicate(tree: Any) -> Any:
    """The first device's copy of a pmapped value (all copies are equal)."""
    return jax.tree_util.tree_map(lambda x: x[0], tree)


def pmap_step(
    step: MetaTrainStep,
    devices: Sequence[jax.Device] | None = None,
    *,
    axis_name: str = TASKS,
) -> Callable[[MetaTrainState, Task, PRNGKey], tuple[MetaTrainState, Metrics]]:
    """``jax.pmap`` a per-device meta-step over ``devices`` (default: all local ones).

    Args:
      step: a :class:`~jmeta.MetaTrainStep` built with ``axis_name`` equal
        to this function's ``axis_name``.
      devices: the devices to map over.
      axis_name: the pmapped axis name that the step averages over.

    Returns:
      ``update(state, tasks, key) -> (state, metrics)`` where ``state`` and the
      returned state and metrics have a leading device axis
      (:func:`replicate_for_pmap` / :func:`unreplicate`), ``tasks`` is the
      global ``[T, ...]`` batch and ``key`` one key. Device ``d`` trains on
      the ``d``-th contiguous block of tasks, and task ``t`` gets the ``t``-th
      of ``jax.random.split(key, T)``, as on one device.

    Raises:
      ValueError: if the tasks do not split evenly over the devices.
    """
    update = check_step(step).update
    devices = list(jax.local_devices() if devices is None else devices)
    num_devices = len(devices)
    mapped = jax.pmap(update, axis_name=axis_name, devices=devices, donate_argnums=0)

    def split(tasks: Task, key: PRNGKey):
        check_task(tasks, batched=True)
        num_tasks = tasks.support.x.shape[0]
        if num_tasks % num_devices:
            raise ValueError(
                f"the meta-batch of {num_tasks} tasks does not split evenly over the "
                f"{num_devices} devices given to pmap_step: use a multiple of "
                f"{num_devices} tasks."
            )
        per_device = lambda a: a.reshape(num_devices, num_tasks // num_devices, *a.shape[1:])  # noqa: E731
        return jax.tree_util.tree_map(per_device, (tasks, per_task_keys(key, num_tasks)))

    split = jax.jit(split)

    def pmapped(state, tasks, key):
        tasks, keys = split(tasks, key)
        return mapped(state, tasks, keys)

    return pmapped
