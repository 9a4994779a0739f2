"""Meta-steps under ``jax.shard_map``: per-device programs with an explicit collective.

Each device vmaps the meta-loss over its own tasks, differentiates it, and the
devices average their gradients and metrics with one ``lax.pmean``; every
device then applies the same optax update to its copy of the state. The step
is built with ``jmeta.meta_train_step(..., axis_name=mesh_axis)``.

The trap this avoids: under ``shard_map``'s varying-manual-axes typing, a
replicated (device-invariant) parameter used with device-local data is
implicitly broadcast, and the transpose of that broadcast is a ``psum``. So
``jax.grad`` of a device's loss with respect to the replicated parameters
returns the *sum over devices*: an inner loop differentiating its support loss
that way would adapt each task with every device's gradients, and an outer
gradient would come out ``num_devices`` times too large. ``meta_gradient(...,
axis_name=...)`` first casts the parameters to device-varying
(``jax.lax.pcast``), so every gradient is device-local until the explicit
``pmean``.
"""

from __future__ import annotations

import jax
from jax.sharding import Mesh, PartitionSpec

from jmeta._vma import varying_axes
from jmeta.parallel.mesh import axis_name_of, check_divisible, num_tasks_of
from jmeta.step import MetaTrainStep, check_step, per_task_keys


def shard_map_step(step: MetaTrainStep, mesh: Mesh) -> MetaTrainStep:
    """The per-device meta-step ``step`` run on every device of ``mesh`` with ``shard_map``.

    Args:
      step: a :class:`~jmeta.MetaTrainStep` built with ``axis_name`` equal to
        the mesh's axis name (``"tasks"`` for :func:`~jmeta.parallel.task_mesh`).
      mesh: a 1-D task mesh.

    Returns:
      A :class:`~jmeta.MetaTrainStep` with the same ``init`` whose ``update(state,
      tasks, key)`` takes the global batch of tasks; device ``d`` trains on the
      ``d``-th contiguous block of it. Task ``t`` gets the ``t``-th of
      ``jax.random.split(key, T)`` wherever it runs, so the result equals the
      single-device step's. Compile it like any step, over the same mesh:
      :func:`~jmeta.parallel.sharded_step` or
      :func:`~jmeta.parallel.sharded_scan_steps`.

    Raises:
      ValueError: if the tasks do not split evenly over the mesh, or (at trace
        time) if the step returns device-varying state, which means it was built
        without ``axis_name`` (each device would drift apart).

    Example:
      >>> import jax, jax.numpy as jnp, optax, jmeta
      >>> from jmeta.parallel import shard_map_step, sharded_step, task_mesh
      >>> apply = lambda p, x: jnp.tanh(x @ p["w"]) @ p["head"]
      >>> params = {"w": jnp.full((1, 16), 0.3), "head": jnp.zeros((16, 1))}
      >>> learner = jmeta.maml(apply, jmeta.losses.mse, inner_lr=0.01)
      >>> step = jmeta.meta_train_step(learner, optax.sgd(1e-3), axis_name="tasks")
      >>> mesh = task_mesh()
      >>> update = sharded_step(shard_map_step(step, mesh), mesh)
      >>> num_tasks = 4 * jax.device_count()
      >>> tasks = jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid, jax.random.key(1), num_tasks)
      >>> state, metrics = update(step.init(params), tasks, jax.random.key(2))
      >>> int(state.step)
      1
    """
    update = check_step(step).update
    axis = axis_name_of(mesh)

    def local(state, tasks, keys):
        new_state, metrics = update(state, tasks, keys)
        _check_invariant(new_state, metrics, axis)
        return new_state, metrics

    mapped = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec(axis), PartitionSpec(axis)),
        out_specs=(PartitionSpec(), PartitionSpec()),
    )

    def mapped_update(state, tasks, key):
        num_tasks = num_tasks_of(tasks)
        check_divisible(num_tasks, mesh)
        return mapped(state, tasks, per_task_keys(key, num_tasks))

    return step._replace(update=mapped_update)


def _check_invariant(state, metrics, axis: str) -> None:
    for leaf in jax.tree_util.tree_leaves((state, metrics)):
        if axis in varying_axes(leaf):
            raise ValueError(
                f"the meta-step returned state or metrics that differ across the devices of "
                f"mesh axis {axis!r}: build it with jmeta.meta_train_step(..., "
                f"axis_name={axis!r}) so that gradients and metrics are averaged over devices."
            )
