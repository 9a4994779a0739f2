r"""CAVIA: adapt only a small context vector fed to the network.

Zintgraf, Shiarlis, Kurin, Hofmann and Whiteson, *Fast Context Adaptation via
Meta-Learning*, ICML 2019. https://arxiv.org/abs/1810.03642
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jmeta.algorithms.gradient_based import (
    MetricFns,
    gradient_based_learner,
    resolve_inner_optimizer,
)
from jmeta.models.policy import batch_norm_policy, resolve_transductive, with_batch_norm_policy
from jmeta.types import Array, LossFn, MetaLearner, Params
from jmeta.validation import check_callable, check_positive_int


class ContextParams(NamedTuple):
    """CAVIA's adapted parameters: the shared network and the task's context."""

    params: Params
    context: Array  # [context_size]


def cavia(
    apply_fn: Callable,
    loss_fn: LossFn,
    *,
    context_size: int,
    inner_lr: float | None = None,
    num_steps: int = 1,
    inner_optimizer: optax.GradientTransformation | None = None,
    first_order: bool = False,
    remat: bool = False,
    transductive: bool | None = None,
    metrics: MetricFns | None = None,
) -> MetaLearner:
    r"""CAVIA (fast context adaptation).

    The network takes a context vector, :math:`f_\theta(x, \phi)`. For each task
    the context starts at zero (it is *not* meta-learned) and only it adapts,

    .. math:: \phi_0 = 0, \qquad
              \phi_{k+1} = \phi_k - \alpha \nabla_\phi \mathcal{L}^{s}(\theta, \phi_k),

    while the meta-parameters :math:`\theta` follow the gradient of the query
    loss :math:`\mathcal{L}^{q}(\theta, \phi_K(\theta))`, through the inner loop
    (second order) or not (``first_order=True``). The inner loop is the core
    :func:`~jmeta.inner.inner_loop` on a :class:`ContextParams` with only the
    context adapting, so every inner optimizer, ``remat`` and test-time
    ``num_steps`` work as in MAML.

    Args:
      apply_fn: ``(params, x, context) -> predictions`` with ``context`` of
        shape ``[context_size]``. :func:`concat_context` builds one from an
        ordinary ``(params, x)`` model whose input is widened by
        ``context_size`` (the paper's choice for regression; it uses FiLM
        layers driven by the context for images). With ``transductive=False``
        it must also accept ``reference=``.
      loss_fn: as in :func:`~jmeta.maml`.
      context_size: the number of context parameters.
      inner_lr: inner SGD step size; give this or ``inner_optimizer`` (the
        paper uses SGD with a large step, e.g. 1.0 for regression).
      num_steps, inner_optimizer, first_order, remat, transductive, metrics:
        as in :func:`~jmeta.maml`.

    Returns:
      A :class:`~jmeta.MetaLearner` whose meta-parameters are the network's
      params; ``adapt`` returns :class:`ContextParams`. The context has the
      dtype of the first parameter leaf.

    Example:
      >>> import jax, jmeta
      >>> model = jmeta.models.mlp((1 + 4, 40, 40, 1))
      >>> learner = jmeta.cavia(jmeta.algorithms.concat_context(model.apply),
      ...                       jmeta.losses.mse, context_size=4, inner_lr=1.0)
      >>> theta = learner.init(model.init(jax.random.key(0)))
      >>> task = jmeta.tasks.sinusoid(jax.random.key(1))
      >>> learner.adapt(theta, task.support).context.shape
      (4,)
    """
    check_callable("apply_fn", apply_fn, "a function (params, x, context) -> predictions")
    context_size = check_positive_int("context_size", context_size)
    optimizer = resolve_inner_optimizer(inner_lr, inner_optimizer)
    transductive = resolve_transductive(apply_fn, transductive)  # the policy of apply_fn

    def unpack(theta: Params):
        dtype = jax.tree_util.tree_leaves(theta)[0].dtype
        return ContextParams(theta, jnp.zeros((context_size,), dtype)), optimizer

    def with_context(p: ContextParams, x: Array, **kwargs) -> Array:
        return apply_fn(p.params, x, p.context, **kwargs)

    return gradient_based_learner(
        with_context,
        loss_fn,
        init=lambda params: params,
        unpack=unpack,
        num_steps=num_steps,
        first_order=first_order,
        remat=remat,
        adapt_params=lambda path: path == "context",
        transductive=transductive,
        metrics=metrics,
    )


def concat_context(apply_fn: Callable) -> Callable:
    """``(params, x, context) -> apply_fn(params, [x, context])``, context appended to every row.

    For a model on flat inputs ``[n, d]`` built for ``d + context_size``
    inputs (e.g. an MLP); extra keyword arguments pass through.
    """

    def apply(params: Params, x: Array, context: Array, **kwargs) -> Array:
        rows = jnp.broadcast_to(context.astype(x.dtype), (*x.shape[:-1], context.shape[-1]))
        return apply_fn(params, jnp.concatenate([x, rows], axis=-1), **kwargs)

    policy = batch_norm_policy(apply_fn)  # the model's batch-norm policy is kept
    return apply if policy is None else with_batch_norm_policy(apply, policy)
