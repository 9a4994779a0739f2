r"""Reptile: move the initialisation towards the task-adapted parameters.

Nichol, Achiam and Schulman, *On First-Order Meta-Learning Algorithms*, 2018.
https://arxiv.org/abs/1803.02999
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jmeta.algorithms.gradient_based import (
    MetricFns,
    WithReference,
    check_builder_args,
    label_checks,
    query_metrics,
    resolve_inner_optimizer,
)
from jmeta.algorithms.maml import maml
from jmeta.types import Array, Batch, LossFn, MetaLearner, Metrics, Params, Task
from jmeta.validation import check_task

INNER_DATA = ("support", "support+query")


def reptile(
    apply_fn: Callable,
    loss_fn: LossFn,
    *,
    inner_lr: float | None = None,
    num_steps: int = 5,
    inner_optimizer: optax.GradientTransformation | None = None,
    inner_data: str = "support",
    transductive: bool | None = None,
    metrics: MetricFns | None = None,
) -> MetaLearner:
    r"""Reptile.

    The meta-parameters are an initialisation :math:`\theta`. For each task the
    inner loop takes :math:`K` optimizer steps from :math:`\theta` to
    :math:`\phi_K`, and the meta-gradient of a batch of :math:`T` tasks is

    .. math:: g = \frac{1}{T} \sum_{t=1}^{T} (\theta - \phi_K^{(t)}),

    so ``optax.sgd(epsilon)`` as the meta-optimizer gives the paper's batched
    update :math:`\theta \leftarrow \theta + \epsilon \frac{1}{T}\sum_t
    (\phi_K^{(t)} - \theta)`, and any other optax optimizer (Adam, schedules,
    clipping) applies to :math:`g` as to any gradient. The direction comes
    from the surrogate

    .. math:: \ell(\theta) = \tfrac12 \lVert \theta - \operatorname{sg}(\phi_K) \rVert^2,

    with :math:`\operatorname{sg}` the stop-gradient, whose gradient is exactly
    :math:`\theta - \phi_K`. The inner loop runs on
    :math:`\operatorname{sg}(\theta)` and is never differentiated: memory does
    not grow with :math:`K`.

    What is reported: ``meta_loss`` returns :math:`\ell` (half the squared
    distance the task moved the parameters, ``metrics["surrogate"]``), which is
    *not* a loss to watch fall. ``metrics["loss"]`` is the query loss at
    :math:`\phi_K`, as for every other learner, so training curves compare.

    The inner data (``inner_data``): ``"support"`` (default) adapts on the
    support set only, exactly as ``adapt`` does at test time, so training
    matches evaluation and ``metrics["loss"]`` is a held-out loss.
    ``"support+query"`` adapts on both sets together during meta-training, as
    the paper does (it has no support/query split at training time and uses
    every example of a task); ``metrics["loss"]`` is then an in-sample loss.
    The paper's inner minibatches are not implemented: every inner step sees
    the whole inner batch.

    Args:
      apply_fn, loss_fn: as in :func:`~jmeta.maml`.
      inner_lr: inner SGD step size; give this or ``inner_optimizer``. The
        paper uses Adam with ``b1=0`` in the inner loop for classification.
      num_steps: inner steps :math:`K` (``adapt``/``evaluate`` take another
        value at test time).
      inner_optimizer: any optax transform for the inner loop.
      inner_data: ``"support"`` or ``"support+query"``; see above.
      transductive, metrics: as in :func:`~jmeta.maml`.

    Returns:
      A :class:`~jmeta.MetaLearner` whose meta-parameters are the model params.

    Example:
      >>> import jax, optax, jmeta
      >>> model = jmeta.models.mlp((1, 40, 40, 1))
      >>> learner = jmeta.reptile(model.apply, jmeta.losses.mse, inner_lr=0.02, num_steps=5)
      >>> step = jmeta.meta_train_step(learner, optax.sgd(0.1))  # epsilon = 0.1
    """
    if inner_data not in INNER_DATA:
        raise ValueError(f"inner_data must be one of {INNER_DATA}; got {inner_data!r}.")
    optimizer = resolve_inner_optimizer(inner_lr, inner_optimizer)
    # Reptile adapts and predicts exactly as MAML does; only the meta-objective differs.
    base = maml(
        apply_fn,
        loss_fn,
        inner_optimizer=optimizer,
        num_steps=num_steps,
        transductive=transductive,
        metrics=metrics,
    )
    metric_fns = check_builder_args(apply_fn, loss_fn, metrics)

    def meta_loss(theta: Params, task: Task, key=None) -> tuple[Array, Metrics]:
        check_task(task)
        data = task.support if inner_data == "support" else _concat(task.support, task.query)
        adapted = base.adapt(jax.lax.stop_gradient(theta), data, key)
        phi = adapted
        if isinstance(adapted, WithReference):  # queries are normalised with the support set
            phi, adapted = adapted.params, adapted._replace(reference=task.support.x)
        sq = optax.tree_utils.tree_norm(optax.tree_utils.tree_sub(theta, phi), squared=True)
        surrogate = 0.5 * sq
        predictions = base.predict(adapted, task.query.x)
        out = query_metrics(loss_fn, metric_fns, predictions, task.query.y)
        out.update(surrogate=surrogate, **label_checks(predictions, task))
        return surrogate, out

    return base._replace(meta_loss=meta_loss)


def _concat(a: Batch, b: Batch) -> Batch:
    return Batch(jnp.concatenate([a.x, b.x]), jnp.concatenate([a.y, b.y]))
