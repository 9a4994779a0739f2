r"""MAML and first-order MAML.

Finn, Abbeel and Levine, *Model-Agnostic Meta-Learning for Fast Adaptation of
Deep Networks*, ICML 2017. https://arxiv.org/abs/1703.03400
"""

from __future__ import annotations

from collections.abc import Callable

import optax

from jmeta.algorithms.gradient_based import (
    MetricFns,
    gradient_based_learner,
    resolve_inner_optimizer,
)
from jmeta.params import MaskSpec
from jmeta.types import LossFn, MetaLearner


def maml(
    apply_fn: Callable,
    loss_fn: LossFn,
    *,
    inner_lr: float | None = None,
    num_steps: int = 1,
    inner_optimizer: optax.GradientTransformation | None = None,
    first_order: bool = False,
    remat: bool = False,
    unroll: int | bool = 1,
    adapt_params: MaskSpec = None,
    transductive: bool | None = None,
    metrics: MetricFns | None = None,
) -> MetaLearner:
    r"""Model-Agnostic Meta-Learning.

    The meta-parameters are the model's initialisation :math:`\theta`. For each
    task :math:`\mathcal{T}` the inner loop takes :math:`K` steps on the support
    loss (SGD by default),

    .. math:: \phi_0 = \theta, \qquad
              \phi_{k+1} = \phi_k - \alpha \nabla_\phi \mathcal{L}^{s}_{\mathcal{T}}(\phi_k),

    and the meta-objective is the query loss of the adapted parameters,
    :math:`\mathcal{L}^{q}_{\mathcal{T}}(\phi_K(\theta))`, differentiated through
    the inner loop (second order). ``first_order=True`` treats every inner
    gradient as a constant (FOMAML): the meta-gradient becomes
    :math:`\nabla_\phi \mathcal{L}^{q}(\phi_K)`.

    Args:
      apply_fn: ``(params, x) -> predictions``.
      loss_fn: ``(predictions, targets) -> scalar`` (support and query).
      inner_lr: inner SGD step size :math:`\alpha`. Give this or ``inner_optimizer``.
      num_steps: inner steps :math:`K` during meta-training (``adapt`` and
        ``evaluate`` take a different ``num_steps`` at test time).
      inner_optimizer: any optax transform used in the inner loop instead of
        SGD (its state starts fresh for every task).
      first_order: FOMAML.
      remat: recompute each inner step in the backward pass (memory grows far
        slower with ``num_steps``).
      unroll: inner steps per iteration of the inner ``lax.scan`` (``True``:
        all); trades compile time for speed on accelerators.
      adapt_params: which parameters adapt: ``None`` (all), a predicate on
        parameter paths, or a bool mask (see :mod:`jmeta.params`).
      transductive: ``None`` (default) follows the batch-norm policy the model
        states (a ``batch_norm="support"`` model gets ``reference=`` for its
        query predictions); ``True``/``False`` must agree with it. See
        :func:`~jmeta.algorithms.gradient_based.gradient_based_learner`.
      metrics: extra query metrics, e.g. ``{"accuracy": jmeta.losses.accuracy}``.

    Returns:
      A :class:`~jmeta.MetaLearner` whose meta-parameters are the model params.

    Example:
      >>> import jax, jmeta
      >>> model = jmeta.models.mlp((1, 40, 40, 1))
      >>> learner = jmeta.maml(model.apply, jmeta.losses.mse, inner_lr=0.01)
      >>> theta = learner.init(model.init(jax.random.key(0)))
      >>> task = jmeta.tasks.sinusoid(jax.random.key(1), num_support=10, num_query=10)
      >>> loss, metrics = learner.meta_loss(theta, task, jax.random.key(2))
      >>> meta_grad = jax.grad(lambda t: learner.meta_loss(t, task, None)[0])(theta)
    """
    optimizer = resolve_inner_optimizer(inner_lr, inner_optimizer)
    return gradient_based_learner(
        apply_fn,
        loss_fn,
        init=lambda params: params,
        unpack=lambda theta: (theta, optimizer),
        num_steps=num_steps,
        first_order=first_order,
        remat=remat,
        unroll=unroll,
        adapt_params=adapt_params,
        transductive=transductive,
        metrics=metrics,
    )


def fomaml(apply_fn: Callable, loss_fn: LossFn, **kwargs) -> MetaLearner:
    r"""First-order MAML: :func:`maml` with ``first_order=True``.

    The meta-gradient is the query-loss gradient at the adapted parameters,
    :math:`\nabla_\phi \mathcal{L}^{q}(\phi_K)`, applied to :math:`\theta`
    (Finn et al. 2017, section 5.2). Takes the same keyword arguments as
    :func:`maml`.
    """
    if "first_order" in kwargs:
        raise TypeError("fomaml is always first-order; use maml(first_order=...) instead.")
    return maml(apply_fn, loss_fn, first_order=True, **kwargs)
