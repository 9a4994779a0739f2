r"""Meta-steps: batch the per-task meta-loss, differentiate, update.

The meta-objective over a batch of :math:`T` tasks is the mean per-task loss,

.. math:: \mathcal{J}(\theta) = \frac{1}{T} \sum_{t=1}^{T} \text{meta\_loss}(\theta, \mathcal{T}_t),

computed with ``jax.vmap`` over the task axis (no Python loop over tasks); its
gradient is applied by any optax optimizer. :func:`meta_train_step` returns the
pure functions; :func:`jit_step` and :func:`scan_steps` compile them, the
latter running many meta-steps, task sampling included, in one call.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jmeta.types import Array, MetaLearner, MetaParams, Metrics, PRNGKey, Task
from jmeta.validation import check_positive_int, check_task


class MetaTrainState(NamedTuple):
    """Everything a meta-training run carries from step to step."""

    meta_params: MetaParams
    opt_state: optax.OptState
    step: Array  # int32 scalar: meta-steps applied so far


class MetaTrainStep(NamedTuple):
    """``init(meta_params) -> state`` and ``update(state, tasks, key) -> (state, metrics)``."""

    init: Callable[[MetaParams], MetaTrainState]
    update: Callable[[MetaTrainState, Task, PRNGKey], tuple[MetaTrainState, Metrics]]


def batched_meta_loss(
    learner: MetaLearner, meta_params: MetaParams, tasks: Task, key: PRNGKey
) -> tuple[Array, Metrics]:
    """Mean meta-loss over a batch of tasks (leading task axis), and mean metrics."""
    check_task(tasks, batched=True)
    num_tasks = tasks.support.x.shape[0]
    keys = jax.random.split(key, num_tasks)
    losses, metrics = jax.vmap(learner.meta_loss, in_axes=(None, 0, 0))(meta_params, tasks, keys)
    return losses.mean(), jax.tree_util.tree_map(jnp.mean, metrics)


def meta_gradient(
    learner: MetaLearner, meta_params: MetaParams, tasks: Task, key: PRNGKey
) -> tuple[MetaParams, Metrics]:
    """The meta-gradient of :func:`batched_meta_loss`, and its metrics."""
    grads, metrics = jax.grad(
        lambda p: batched_meta_loss(learner, p, tasks, key), has_aux=True
    )(meta_params)
    return grads, metrics


def meta_train_step(
    learner: MetaLearner, optimizer: optax.GradientTransformation, *, skip_nonfinite: bool = True
) -> MetaTrainStep:
    """Pure ``init``/``update`` functions for meta-training ``learner``.

    Args:
      learner: any :class:`~jmeta.MetaLearner`.
      optimizer: the meta-optimizer (e.g. ``optax.adam(1e-3)``).
      skip_nonfinite: if the meta-loss or meta-gradient of a step is NaN or
        infinite, leave the state unchanged (the step counter too) and report
        ``metrics["finite"] == False``, so a run can stop with its last good
        parameters intact even when many steps run inside one compiled call.

    Returns:
      A :class:`MetaTrainStep`. ``update`` is pure; compile it with
      :func:`jit_step` (or ``jax.jit``) or run many in one call with
      :func:`scan_steps`.

    Example:
      >>> import jax, optax, jmeta
      >>> model = jmeta.models.mlp((1, 40, 40, 1))
      >>> learner = jmeta.maml(model.apply, jmeta.losses.mse, inner_lr=0.01)
      >>> step = jmeta.meta_train_step(learner, optax.adam(1e-3))
      >>> state = step.init(learner.init(model.init(jax.random.key(0))))
      >>> tasks = jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid, jax.random.key(1), 25)
      >>> state, metrics = jmeta.jit_step(step)(state, tasks, jax.random.key(2))
    """

    def init(meta_params: MetaParams) -> MetaTrainState:
        return MetaTrainState(meta_params, optimizer.init(meta_params), jnp.zeros((), jnp.int32))

    def update(state: MetaTrainState, tasks: Task, key: PRNGKey):
        grads, metrics = meta_gradient(learner, state.meta_params, tasks, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.meta_params)
        new = MetaTrainState(
            optax.apply_updates(state.meta_params, updates), opt_state, state.step + 1
        )
        finite = jnp.isfinite(metrics["loss"]) & _all_finite(grads)
        metrics = {**metrics, "finite": finite, "grad_norm": _global_norm(grads)}
        if skip_nonfinite:
            new = jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, state)
        return new, metrics

    return MetaTrainStep(init, update)


def jit_step(step: MetaTrainStep) -> Callable:
    """``jax.jit`` of ``step.update`` with the state's buffers donated."""
    return jax.jit(step.update, donate_argnums=0)


def scan_steps(
    update: Callable,
    sample_tasks: Callable[[PRNGKey], Task],
    num_steps: int,
) -> Callable[[MetaTrainState, PRNGKey], tuple[MetaTrainState, Metrics]]:
    """Run ``num_steps`` meta-steps, sampling included, in one compiled call.

    Step ``s`` (counted by ``state.step``) draws its tasks and its step key from
    ``jax.random.fold_in(key, s)``, so a run is the same whether it is cut into
    calls of 1, 10 or 1000 steps, and a run resumed from a checkpoint continues
    exactly as it would have. (A step skipped as non-finite leaves ``state.step``
    unchanged and would be retried with the same tasks: the trainer stops on it.)

    Args:
      update: ``step.update`` of a :class:`MetaTrainStep`.
      sample_tasks: ``(key) -> batch of tasks``, pure and jittable (e.g.
        ``functools.partial(jmeta.tasks.sample_tasks, jmeta.tasks.sinusoid,
        batch_size=25)``).
      num_steps: meta-steps per call.

    Returns:
      A jitted ``(state, key) -> (state, metrics)`` whose metrics have a
      leading axis of ``num_steps``; the state's buffers are donated.
    """
    num_steps = check_positive_int("num_steps", num_steps)

    def run(state, key):
        def body(state, _):
            task_key, step_key = jax.random.split(jax.random.fold_in(key, state.step))
            return update(state, sample_tasks(task_key), step_key)

        return jax.lax.scan(body, state, None, length=num_steps)

    return jax.jit(run, donate_argnums=0)


def evaluate_tasks(
    learner: MetaLearner,
    meta_params: MetaParams,
    tasks: Task,
    key: PRNGKey,
    num_steps: int | None = None,
) -> Metrics:
    """Per-task evaluation metrics (each ``[T]``) over a batch of tasks.

    ``num_steps`` sets the number of inner steps at test time (``None``: the
    training value). Jit it with ``num_steps`` static, or use
    :func:`jmeta.evaluate` for the full 95%-confidence protocol.
    """
    check_task(tasks, batched=True)
    keys = jax.random.split(key, tasks.support.x.shape[0])
    return jax.vmap(lambda t, k: learner.evaluate(meta_params, t, k, num_steps))(tasks, keys)


def _global_norm(tree) -> Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


def _all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.stack(leaves).all() if leaves else jnp.array(True)
