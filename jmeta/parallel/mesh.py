"""A 1-D device mesh over tasks, and placing tasks and state on it.

Meta-learning parallelises over tasks: every device runs the inner loops of its
own slice of the meta-batch, and the meta-parameters and optimizer state are
replicated. The mesh has one axis, ``"tasks"``; tasks are split over it in
contiguous blocks (``PartitionSpec("tasks")`` on the leading task axis), and
everything else is replicated (``PartitionSpec()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jmeta.types import Task
from jmeta.validation import check_task

TASKS = "tasks"


def task_mesh(devices: Sequence[jax.Device] | None = None, axis_name: str = TASKS) -> Mesh:
    """A 1-D mesh named ``axis_name`` over ``devices`` (default: all of them).

    The axis is of the ``Auto`` type (``jax.make_mesh`` defaults to
    ``Explicit`` in recent JAX), so ``jit`` moves inputs to the shardings the
    program asks for and ``with_sharding_constraint`` steers propagation.
    With several processes, ``jax.devices()`` lists every process's devices,
    so the default mesh spans them all.

    Example:
      >>> import jax
      >>> from jmeta.parallel import task_mesh
      >>> mesh = task_mesh(jax.devices()[:1])
      >>> dict(mesh.shape)
      {'tasks': 1}
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("task_mesh needs at least one device; got an empty list.")
    return Mesh(np.asarray(devices), (axis_name,), axis_types=(jax.sharding.AxisType.Auto,))


def axis_name_of(mesh: Mesh) -> str:
    """The name of a 1-D mesh's only axis."""
    if len(mesh.axis_names) != 1:
        raise ValueError(
            f"jmeta.parallel needs a 1-D mesh over tasks; got axes {mesh.axis_names} "
            f"of sizes {tuple(mesh.shape.values())}."
        )
    return mesh.axis_names[0]


def task_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (task) axis split over the mesh, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(axis_name_of(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def check_divisible(num_tasks: int, mesh: Mesh) -> None:
    """Raise a ``ValueError`` unless ``num_tasks`` splits evenly over the mesh.

    Every device must get the same number of tasks. Rather than padding with
    masked tasks (which would cost the padded tasks' compute and change what a
    "mean over tasks" means), a meta-batch that does not split evenly is an
    error.
    """
    num_devices = mesh.size
    if num_tasks % num_devices:
        raise ValueError(
            f"the meta-batch of {num_tasks} tasks does not split evenly over the "
            f"{num_devices} devices of mesh axis {axis_name_of(mesh)!r}: use a multiple "
            f"of {num_devices} tasks (e.g. {-(-num_tasks // num_devices) * num_devices}) "
            f"or a mesh of a divisor of {num_tasks} devices."
        )


def num_tasks_of(tasks: Task) -> int:
    """The size of the leading task axis of a batch of tasks (validated)."""
    check_task(tasks, batched=True)
    return tasks.support.x.shape[0]


def shard_tasks(tasks: Task, mesh: Mesh) -> Task:
    """Place a batch of tasks on the mesh, split over the task axis.

    Args:
      tasks: a batch of tasks (leading task axis on every leaf) in one process.
      mesh: a 1-D task mesh.

    Returns:
      The same tasks as global arrays sharded with :func:`task_sharding`.

    Raises:
      ValueError: if the number of tasks does not split evenly over the mesh.
    """
    check_divisible(num_tasks_of(tasks), mesh)
    return jax.device_put(tasks, task_sharding(mesh))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copy a pytree (parameters, a ``MetaTrainState``) onto every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def shard_process_tasks(local_tasks: Task, mesh: Mesh) -> Task:
    """Assemble a global batch of tasks from each process's own tasks (multi-host).

    Each process passes the tasks that its own devices will train on (the same
    number in every process, :func:`process_task_slice` of the global batch);
    the global batch is their concatenation in the mesh's device order (process
    order for :func:`task_mesh`), split over the mesh's task axis. Built with
    ``jax.make_array_from_process_local_data``, so no process ever holds the
    whole batch. With one process this is :func:`shard_tasks`.

    Args:
      local_tasks: this process's tasks, ``T / num_processes`` of them.
      mesh: a task mesh over the devices of all processes (``task_mesh()``
        after ``jax.distributed.initialize``).

    Returns:
      The global batch of ``T`` tasks, sharded over the mesh.
    """
    local = num_tasks_of(local_tasks)
    global_tasks = local * jax.process_count()
    check_divisible(global_tasks, mesh)
    sharding = task_sharding(mesh)
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_process_local_data(
            sharding, np.asarray(a), (global_tasks, *a.shape[1:])
        ),
        local_tasks,
    )


def process_task_slice(num_tasks: int, mesh: Mesh) -> slice:
    """The slice of a global meta-batch of ``num_tasks`` that this process feeds.

    For samplers that can draw any task of the global batch (a task is a pure
    function of its key): with :func:`task_mesh`'s device order, process ``p``
    of ``P`` owns tasks ``[p * T / P, (p + 1) * T / P)``. Read off the task
    sharding, so it holds for any device order whose blocks are contiguous.
    """
    check_divisible(num_tasks, mesh)
    index_map = task_sharding(mesh).addressable_devices_indices_map((num_tasks,))
    blocks = sorted(i[0].indices(num_tasks)[:2] for i in index_map.values() if i is not None)
    if any(stop != start for (_, stop), (start, _) in zip(blocks[:-1], blocks[1:], strict=True)):
        raise ValueError(
            "this process's devices do not hold one contiguous block of the task axis; "
            "build the mesh with task_mesh() (devices in process order)."
        )
    return slice(blocks[0][0], blocks[-1][1])
