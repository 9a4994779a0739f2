r"""Meta-steps: batch the per-task meta-loss, differentiate, update.

The meta-objective over a batch of :math:`T` tasks is the mean per-task loss,

.. math:: \mathcal{J}(\theta) = \frac{1}{T} \sum_{t=1}^{T} \text{meta\_loss}(\theta, \mathcal{T}_t),

computed with ``jax.vmap`` over the task axis (no Python loop over tasks); its
gradient is applied by any optax optimizer. :func:`meta_train_step` returns the
pure functions as a :class:`MetaTrainStep`; :func:`jit_step` and
:func:`scan_steps` compile one, the latter running many meta-steps, task
sampling included, in one call (and so do the sharded helpers of
:mod:`jmeta.parallel`).

One data contract runs through all of them: a task sampler is
``(key, data) -> Task``, where ``data`` is a pytree of device-resident arrays
(a data set's images, or ``None``) passed as an argument of the compiled
function, never closed over (a closed-over array is compiled into the program
as a constant).

Two options bound memory and spread the work: ``chunk_size`` evaluates the
batch as sequential chunks of vmapped tasks, each chunk's backward pass done
before the next starts, so temporary memory scales with the chunk rather than
the batch; ``axis_name`` makes the step a per-device program for
``shard_map``/``pmap`` (see :mod:`jmeta.parallel`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jmeta._dtypes import at_least_float32, tree_at_least_float32
from jmeta._vma import device_varying
from jmeta.types import Array, MetaLearner, MetaParams, Metrics, PRNGKey, Task
from jmeta.validation import check_bool, check_optimizer, check_positive_int, check_task


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
    """Mean meta-loss over a batch of tasks (leading task axis), and mean metrics.

    ``key`` is one PRNG key, split into one key per task, or already one key
    per task (a ``[T]`` array of typed keys, or ``[T, 2]`` raw ``uint32`` keys).
    """
    check_task(tasks, batched=True)
    keys = per_task_keys(key, tasks.support.x.shape[0])
    losses, metrics = jax.vmap(learner.meta_loss, in_axes=(None, 0, 0))(meta_params, tasks, keys)
    return losses.mean(), jax.tree_util.tree_map(jnp.mean, metrics)


def meta_gradient(
    learner: MetaLearner,
    meta_params: MetaParams,
    tasks: Task,
    key: PRNGKey,
    *,
    chunk_size: int | None = None,
    axis_name: str | None = None,
) -> tuple[MetaParams, Metrics]:
    r"""The meta-gradient of :func:`batched_meta_loss`, and its metrics.

    Args:
      learner: any :class:`~jmeta.MetaLearner`.
      meta_params: the meta-parameters :math:`\theta`.
      tasks: a batch of :math:`T` tasks (leading task axis).
      key: one PRNG key, or one per task (see :func:`batched_meta_loss`).
      chunk_size: ``None`` vmaps all :math:`T` tasks at once. An integer
        :math:`c` dividing :math:`T` runs :math:`T / c` chunks of :math:`c`
        vmapped tasks one after another (``lax.scan``), each computing its
        gradient before the next starts, and sums them:
        :math:`\nabla \mathcal{J} = \frac{1}{T}\sum_{j}\sum_{t \in C_j}
        \nabla \text{meta\_loss}_t`. Same result (up to float rounding),
        memory of one chunk. Chunk :math:`j` holds tasks
        :math:`j, j + T/c, j + 2T/c, \dots`, so a task axis sharded in
        contiguous blocks over devices stays sharded inside every chunk.
      axis_name: the name of a mapped device axis (``shard_map`` or ``pmap``)
        over which the task batch is split: each device computes the gradient
        of its own tasks, then gradient and metrics are averaged across
        devices with ``lax.pmean``. The meta-parameters are first marked
        device-varying, so inside ``shard_map`` every device's inner loop
        differentiates its own tasks' losses only (without this, the gradient
        of a replicated value is summed over devices automatically, and each
        device would adapt with every device's gradients).

    Returns:
      ``(grads, metrics)``: the mean meta-gradient (structure of
      ``meta_params``) and the mean of each per-task metric.
    """
    _check_learner(learner)
    check_task(tasks, batched=True)
    num_tasks = tasks.support.x.shape[0]
    keys = per_task_keys(key, num_tasks)
    if axis_name is not None:
        meta_params = device_varying(meta_params, axis_name)
    if chunk_size is not None:
        chunk_size = _check_chunk_size(chunk_size, num_tasks)
    if chunk_size is None or chunk_size == num_tasks:
        grads, metrics = jax.grad(
            lambda p: batched_meta_loss(learner, p, tasks, keys), has_aux=True
        )(meta_params)
    else:
        grads, metrics = _chunked_meta_gradient(learner, meta_params, tasks, keys, chunk_size)
    if axis_name is not None:
        grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
    return grads, metrics


def _chunked_meta_gradient(learner, meta_params, tasks, keys, chunk_size):
    num_tasks = tasks.support.x.shape[0]
    num_chunks = num_tasks // chunk_size
    # Task t = i * num_chunks + j goes to chunk j, row i: a [T] axis split in
    # contiguous device blocks becomes a [c] axis split the same way.
    chunks = jax.tree_util.tree_map(
        lambda a: jnp.swapaxes(a.reshape(chunk_size, num_chunks, *a.shape[1:]), 0, 1),
        (tasks, keys),
    )

    def chunk_sum(p, chunk):
        chunk_tasks, chunk_keys = chunk
        losses, metrics = jax.vmap(learner.meta_loss, in_axes=(None, 0, 0))(
            p, chunk_tasks, chunk_keys
        )
        return losses.sum(), jax.tree_util.tree_map(_sum_as_float, metrics)

    def body(total, chunk):
        grads, metrics = jax.grad(chunk_sum, has_aux=True)(meta_params, chunk)
        return jax.tree_util.tree_map(jnp.add, total, (grads, metrics)), None

    first = jax.tree_util.tree_map(lambda a: a[0], chunks)
    # zeros_like of the traced shapes keeps their device-varying type (shard_map).
    zeros = jax.tree_util.tree_map(
        jnp.zeros_like, jax.eval_shape(jax.grad(chunk_sum, has_aux=True), meta_params, first)
    )
    total, _ = jax.lax.scan(body, zeros, chunks)
    return jax.tree_util.tree_map(lambda s: s / num_tasks, total)


def _sum_as_float(x: Array) -> Array:
    return jnp.sum(x, axis=0, dtype=at_least_float32(x.dtype))


def _check_chunk_size(chunk_size: object, num_tasks: int) -> int:
    chunk_size = check_positive_int("chunk_size", chunk_size)
    if num_tasks % chunk_size:
        raise ValueError(
            f"chunk_size={chunk_size} must divide the number of tasks in the meta-batch, "
            f"{num_tasks}; use a divisor of {num_tasks} or chunk_size=None."
        )
    return chunk_size


def _check_learner(learner: object) -> None:
    if not isinstance(learner, MetaLearner):
        raise TypeError(
            f"learner must be a jmeta.MetaLearner (made by jmeta.maml, jmeta.protonet, ...); "
            f"got {type(learner).__name__}."
        )


def per_task_keys(key: PRNGKey, num_tasks: int) -> PRNGKey:
    """One PRNG key per task: ``split(key, num_tasks)``, or ``key`` if it already is.

    Accepts typed keys (``jax.random.key``: one key has shape ``()``) and raw
    ``uint32`` keys (``jax.random.PRNGKey``: one key has shape ``(2,)``). Task
    ``t`` of a meta-batch gets the ``t``-th key wherever it runs, which is
    what makes a step split over devices equal the one-device step.

    Example:
      >>> import jax
      >>> from jmeta.step import per_task_keys
      >>> per_task_keys(jax.random.key(0), 4).shape
      (4,)
    """
    if not isinstance(key, jax.Array):
        raise TypeError(
            f"key must be a PRNG key (e.g. jax.random.key(0)); got {type(key).__name__}."
        )
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not typed and key.dtype != jnp.uint32:
        raise TypeError(
            f"key must be a PRNG key: jax.random.key(seed), or a raw uint32 key; got an "
            f"array of dtype {key.dtype}."
        )
    single = () if typed else (2,)
    if key.shape == single:
        return jax.random.split(key, num_tasks)
    if key.shape == (num_tasks, *single):
        return key
    raise ValueError(
        f"key must be one PRNG key (shape {single}) or one per task (shape "
        f"{(num_tasks, *single)} for {num_tasks} tasks); got shape {key.shape}."
    )


def meta_train_step(
    learner: MetaLearner,
    optimizer: optax.GradientTransformation,
    *,
    skip_nonfinite: bool = True,
    chunk_size: int | None = None,
    axis_name: str | None = None,
) -> MetaTrainStep:
    """Pure ``init``/``update`` functions for meta-training ``learner``.

    Args:
      learner: any :class:`~jmeta.MetaLearner`.
      optimizer: the meta-optimizer (e.g. ``optax.adam(1e-3)``). For an
        optimizer that acts on each element alone (Adam, SGD, ...), wrapping it
        in ``optax.flatten`` gives the same updates (up to float rounding) from
        one fused update of all parameters raveled into a vector, faster for
        models of many small leaves (``jmeta train`` does this). Not for
        optimizers that use the leaf structure (per-layer trust ratios as in
        LAMB, masks by path).
      skip_nonfinite: if the meta-loss or meta-gradient of a step is NaN or
        infinite, or the learner reports labels that do not fit it
        (``metrics["labels_valid"] < 1``), leave the state unchanged (the
        step counter too) and report ``metrics["finite"] == False``, so a run
        can stop with its last good parameters intact even when many steps
        run inside one compiled call. :func:`jmeta.step.nonfinite_cause` says which.
        Not ``optax.apply_if_finite``, which tests the gradient only (not the
        loss or the labels), keeps the step counter moving, adds its counters
        to the optimizer state, and applies a non-finite update after
        ``max_consecutive_errors`` rejected ones.
      chunk_size: evaluate the meta-batch in sequential chunks of this many
        tasks to bound memory (see :func:`meta_gradient`).
      axis_name: build a per-device step for ``shard_map``/``pmap`` whose
        meta-gradient and metrics are averaged over this device axis (see
        :func:`meta_gradient` and :mod:`jmeta.parallel`). ``None`` for one
        device or for ``jit`` with sharded inputs.

    Returns:
      A :class:`MetaTrainStep`. ``update`` is pure; compile it with
      :func:`jit_step` (or ``jax.jit``) or run many in one call with
      :func:`scan_steps`. Its metrics are the learner's (averaged over
      tasks; ``labels_valid``, where the learner reports it, is the fraction
      of tasks whose labels fit the model) plus ``grad_norm`` and
      ``finite`` (the step was applied: loss and gradient finite, and
      ``labels_valid == 1`` where reported).

    Example:
      >>> import jax, optax, jmeta
      >>> model = jmeta.models.mlp((1, 40, 40, 1))
      >>> learner = jmeta.maml(model.apply, jmeta.losses.mse, inner_lr=0.01)
      >>> step = jmeta.meta_train_step(learner, optax.adam(1e-3))
      >>> state = step.init(learner.init(model.init(jax.random.key(0))))
      >>> tasks = jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid, jax.random.key(1), 25)
      >>> state, metrics = jmeta.jit_step(step)(state, tasks, jax.random.key(2))
    """
    _check_learner(learner)
    check_optimizer("optimizer", optimizer)
    check_bool("skip_nonfinite", skip_nonfinite)

    def init(meta_params: MetaParams) -> MetaTrainState:
        # A copy: the compiled steps donate the state's buffers, which must not
        # delete the caller's parameters.
        meta_params = jax.tree_util.tree_map(jnp.copy, meta_params)
        return MetaTrainState(meta_params, optimizer.init(meta_params), jnp.zeros((), jnp.int32))

    def update(state: MetaTrainState, tasks: Task, key: PRNGKey):
        grads, metrics = meta_gradient(
            learner, state.meta_params, tasks, key, chunk_size=chunk_size, axis_name=axis_name
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.meta_params)
        new = MetaTrainState(
            optax.apply_updates(state.meta_params, updates), opt_state, state.step + 1
        )
        grad_norm, grads_finite = _norm_and_finite(grads)
        finite = jnp.isfinite(metrics["loss"]) & grads_finite
        if "labels_valid" in metrics:  # a value check the learner could not raise under jit
            finite = finite & (metrics["labels_valid"] >= 1)
        metrics = {**metrics, "finite": finite, "grad_norm": grad_norm}
        if skip_nonfinite:
            new = jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, state)
        return new, metrics

    return MetaTrainStep(init, update)


def nonfinite_cause(metrics: Metrics) -> str:
    """Why a meta-step's ``metrics["finite"]`` is ``False``, in one sentence.

    Args:
      metrics: the metrics of that one step (host values), as returned by
        :func:`meta_train_step`'s ``update``.
    """
    valid = metrics.get("labels_valid")
    if valid is not None and float(valid) < 1:
        return (
            f"the task labels do not fit the learner (labels_valid = {float(valid):.3g}: in "
            "some tasks a label lies outside [0, number of classes), the classes the model "
            "outputs or the learner's num_classes/shots, or a class lacks its support "
            "examples); check the model's output size and the tasks' ways and shots"
        )
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        return f"the meta-loss is not finite ({loss})"
    return "the meta-gradient is not finite"


def check_step(step: object, name: str = "step") -> MetaTrainStep:
    """``step`` if it is a :class:`MetaTrainStep`; else a ``TypeError`` naming ``name``.

    For the helpers that compile a step (here and in :mod:`jmeta.parallel`).
    """
    if not isinstance(step, MetaTrainStep):
        raise TypeError(
            f"{name} must be a jmeta.MetaTrainStep (made by jmeta.meta_train_step); got "
            f"{type(step).__name__}. To wrap its update, pass step._replace(update=...)."
        )
    return step


def jit_step(step: MetaTrainStep) -> Callable[..., tuple[MetaTrainState, Metrics]]:
    """Compile one meta-step: ``jax.jit`` of ``step.update``, the state's buffers donated.

    Args:
      step: a :class:`MetaTrainStep`.

    Returns:
      ``update(state, tasks, key) -> (state, metrics)``, compiled.
    """
    return jax.jit(check_step(step).update, donate_argnums=0)


def scan_steps(
    step: MetaTrainStep,
    sample_tasks: Callable[[PRNGKey, Any], Task],
    num_steps: int,
) -> Callable[..., tuple[MetaTrainState, Metrics]]:
    """Run ``num_steps`` meta-steps, sampling included, in one compiled call.

    Step ``s`` (counted by ``state.step``) draws its tasks and its step key from
    ``jax.random.fold_in(key, s)``, so a run is the same whether it is cut into
    calls of 1, 10 or 1000 steps, and a run resumed from a checkpoint continues
    exactly as it would have. (A step skipped as non-finite leaves ``state.step``
    unchanged and would be retried with the same tasks: the trainer stops on it.)

    Args:
      step: a :class:`MetaTrainStep`.
      sample_tasks: ``(key, data) -> batch of tasks``, pure and jittable,
        e.g. ``lambda key, data: jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid,
        key, 25, data)``.
      num_steps: meta-steps per call.

    Returns:
      A jitted ``run(state, key, data=None) -> (state, metrics)`` whose metrics
      have a leading axis of ``num_steps``; ``data`` is passed to every
      ``sample_tasks`` call as an argument of the compiled program; the
      state's buffers are donated.

    Example:
      >>> import jax, optax, jmeta
      >>> model = jmeta.models.mlp((1, 40, 40, 1))
      >>> learner = jmeta.maml(model.apply, jmeta.losses.mse, inner_lr=0.01)
      >>> step = jmeta.meta_train_step(learner, optax.sgd(1e-3))
      >>> sample = lambda key, data: jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid, key, 8, data)
      >>> run = jmeta.scan_steps(step, sample, 5)
      >>> state, metrics = run(step.init(learner.init(model.init(jax.random.key(0)))),
      ...                      jax.random.key(1))
      >>> int(state.step), metrics["loss"].shape
      (5, (5,))
    """
    check_step(step)
    num_steps = check_positive_int("num_steps", num_steps)
    if not callable(sample_tasks):
        raise TypeError(
            f"sample_tasks must be a function (key, data) -> Task; got "
            f"{type(sample_tasks).__name__}."
        )

    def run(state: MetaTrainState, key: PRNGKey, data: Any = None):
        def body(state, _):
            task_key, step_key = jax.random.split(jax.random.fold_in(key, state.step))
            return step.update(state, sample_tasks(task_key, data), step_key)

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
    keys = per_task_keys(key, tasks.support.x.shape[0])
    return jax.vmap(lambda t, k: learner.evaluate(meta_params, t, k, num_steps))(tasks, keys)


def _norm_and_finite(tree) -> tuple[Array, Array]:
    """The global L2 norm of ``tree`` and whether all its elements are finite.

    Both come from the leaves raveled into one vector, which XLA reduces in one
    fused pass rather than two reductions per leaf: ``sum(x * 0)`` is 0 if every
    element is finite and NaN otherwise (exact, unlike testing the norm, whose
    squares overflow for large finite values).
    """
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32), jnp.array(True)
    dtype = tree_at_least_float32(leaves)  # one dtype for the vector (leaves may mix)
    flat = jnp.concatenate([jnp.ravel(x).astype(dtype) for x in leaves])
    return jnp.sqrt(jnp.sum(jnp.square(flat))), jnp.isfinite(jnp.sum(flat * 0))
