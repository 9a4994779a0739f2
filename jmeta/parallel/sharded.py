"""Meta-steps compiled with ``jax.jit`` over a task-sharded mesh (GSPMD).

The step is the ordinary single-device step: ``vmap`` over the task axis, mean,
``grad``, optax update. Sharding is only a statement about where data lives: the
tasks are split over the mesh's ``"tasks"`` axis, state is replicated, and the
compiler partitions the vmapped computation accordingly, inserting the
all-reduce that the mean over tasks needs. Nothing in the step changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import Mesh

from jmeta.parallel.mesh import check_divisible, num_tasks_of, replicated, task_sharding
from jmeta.step import MetaTrainState, MetaTrainStep, check_step, scan_steps
from jmeta.types import Metrics, PRNGKey, Task

Update = Callable[[MetaTrainState, Task, PRNGKey], tuple[MetaTrainState, Metrics]]


def constrain_tasks(tasks: Task, mesh: Mesh) -> Task:
    """``with_sharding_constraint`` of a batch of tasks to the task sharding (inside ``jit``).

    Raises:
      ValueError: (at trace time) if the tasks do not split evenly over the mesh.
    """
    check_divisible(num_tasks_of(tasks), mesh)
    return jax.lax.with_sharding_constraint(tasks, task_sharding(mesh))


def sharded_step(step: MetaTrainStep, mesh: Mesh, *, donate: bool = True) -> Update:
    """Compile a meta-step with its task axis sharded over ``mesh``.

    Args:
      step: a :class:`~jmeta.MetaTrainStep` built without ``axis_name``, or
        the one :func:`~jmeta.parallel.shard_map_step` returns.
      mesh: a 1-D task mesh (:func:`~jmeta.parallel.task_mesh`).
      donate: donate the state's buffers.

    Returns:
      A compiled ``update(state, tasks, key) -> (state, metrics)`` that places
      its inputs on the mesh (tasks split over the task axis, state
      replicated; :func:`~jmeta.parallel.shard_tasks` and
      :func:`~jmeta.parallel.replicate` place them ahead of time) and returns
      the new state and the metrics replicated, ready for the next call.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jmeta
      >>> from jmeta.parallel import sharded_step, task_mesh
      >>> apply = lambda p, x: jnp.tanh(x @ p["w"]) @ p["head"]
      >>> params = {"w": jnp.full((1, 16), 0.3), "head": jnp.zeros((16, 1))}
      >>> learner = jmeta.maml(apply, jmeta.losses.mse, inner_lr=0.01)
      >>> step = jmeta.meta_train_step(learner, optax.sgd(1e-3))
      >>> update = sharded_step(step, task_mesh())
      >>> num_tasks = 4 * jax.device_count()
      >>> tasks = jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid, jax.random.key(1), num_tasks)
      >>> state, metrics = update(step.init(params), tasks, jax.random.key(2))
      >>> int(state.step)
      1
    """
    update = check_step(step).update
    rep = replicated(mesh)
    compiled = jax.jit(
        lambda state, tasks, key: update(state, constrain_tasks(tasks, mesh), key),
        out_shardings=(rep, rep),
        donate_argnums=0 if donate else (),
    )
    return lambda state, tasks, key: compiled(*place(mesh, state, tasks), key)


def place(mesh: Mesh, state: MetaTrainState, tasks: Task | None = None):
    """Put ``state`` replicated and ``tasks`` split on ``mesh`` (no-ops if they are).

    (:func:`place_data` puts a sampler's ``data`` replicated.)

    Done before every compiled call, so the first call (host or one-device
    arrays) and later calls (the previous call's outputs) see the same input
    types and share one trace. State that has to move is copied, never aliased:
    the compiled step donates it, and donating an alias would delete the
    caller's arrays (``step.init(params)`` holds ``params`` itself). Keys are
    left alone: a typed PRNG key cannot be ``device_put`` onto devices of other
    processes, and ``jit`` places it.
    """
    rep = replicated(mesh)

    def put_state(x):
        if isinstance(x, jax.core.Tracer):  # inside another jit (sharded_scan_steps)
            return jax.lax.with_sharding_constraint(x, rep)
        if not isinstance(x, jax.Array):
            return jax.device_put(x, rep)
        if x.sharding.is_equivalent_to(rep, x.ndim):
            return x
        # device_put may reuse x's buffer for one of the copies (even with
        # may_alias=False, JAX 0.10), so copy first.
        return jax.device_put(x.copy(), rep)

    state = jax.tree_util.tree_map(put_state, state)
    if tasks is None:
        return (state,)
    check_divisible(num_tasks_of(tasks), mesh)
    return state, jax.device_put(tasks, task_sharding(mesh))


def place_data(mesh: Mesh, data: Any) -> Any:
    """A sampler's ``data`` replicated on ``mesh``: a no-op for arrays already there.

    Copies an array placed elsewhere on every call: place it once with
    :func:`~jmeta.parallel.replicate` instead.
    """
    rep = replicated(mesh)

    def put(x):
        if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(rep, x.ndim):
            return x
        return jax.device_put(x, rep)

    return jax.tree_util.tree_map(put, data)


def sharded_scan_steps(
    step: MetaTrainStep,
    sample_tasks: Callable[[PRNGKey, Any], Task],
    num_steps: int,
    mesh: Mesh,
) -> Callable[..., tuple[MetaTrainState, Metrics]]:
    """:func:`jmeta.scan_steps` over a mesh: sampling and steps in one compiled call.

    Each step's tasks are sampled inside the compiled program and constrained
    to the task sharding, so the compiler can split the sampling over the
    devices too, and no task data crosses the host. Step ``s`` uses
    ``fold_in(key, s)`` exactly as :func:`jmeta.scan_steps`, so a sharded run
    reproduces a single-device run.

    Args:
      step: a :class:`~jmeta.MetaTrainStep` built without ``axis_name``, or
        the one :func:`~jmeta.parallel.shard_map_step` returns.
      sample_tasks: ``(key, data) -> batch of tasks``, pure and jittable.
      num_steps: meta-steps per call.
      mesh: a 1-D task mesh.

    Returns:
      A compiled ``run(state, key, data=None) -> (state, metrics)``; ``data``
      (the sampler's arrays) is an argument, replicated on the mesh (place it
      once with :func:`~jmeta.parallel.replicate`, or it is copied on every
      call); state donated, outputs replicated, metrics with a leading axis of
      ``num_steps``. Its ``lower(state, key, data=None)`` lowers it ahead of
      time as a jitted function's does (``.compile()`` then gives a function
      of inputs already placed on the mesh).
    """
    check_step(step)
    rep = replicated(mesh)
    run = scan_steps(
        step, lambda key, data: constrain_tasks(sample_tasks(key, data), mesh), num_steps
    )
    compiled = jax.jit(run, out_shardings=(rep, rep), donate_argnums=0)

    def placed(state: MetaTrainState, key: PRNGKey, data: Any = None):
        return compiled(*place(mesh, state), key, place_data(mesh, data))

    def lower(state: MetaTrainState, key: PRNGKey, data: Any = None):
        return compiled.lower(*place(mesh, state), key, place_data(mesh, data))

    placed.lower = lower  # type: ignore[attr-defined]
    return placed
