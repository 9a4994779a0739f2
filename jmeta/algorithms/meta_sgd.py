r"""Meta-SGD: meta-learn the initialisation and a step size per parameter.

Li, Zhou, Chen and Li, *Meta-SGD: Learning to Learn Quickly for Few-Shot
Learning*, 2017. https://arxiv.org/abs/1707.09835
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import optax

from jmeta.algorithms.gradient_based import MetricFns, gradient_based_learner
from jmeta.params import MaskSpec, partition, resolve_mask
from jmeta.types import LossFn, MetaLearner, Params
from jmeta.validation import check_real


class MetaSGDParams(NamedTuple):
    """Meta-SGD's meta-parameters: the init and the per-parameter step sizes.

    ``learning_rates`` has the structure of ``params``, with ``None`` for
    parameters that do not adapt.
    """

    params: Params
    learning_rates: Params


def scale_by_learning_rates(learning_rates: Params) -> optax.GradientTransformation:
    """``u = -alpha * g`` elementwise, with ``alpha`` a pytree like the gradients.

    A stateless optax transform; ``alpha`` may be a traced value, which is what
    lets the meta-gradient reach it.
    """

    def init(params):
        del params
        return optax.EmptyState()

    def update(grads, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda a, g: -a * g, learning_rates, grads), state

    return optax.GradientTransformation(init, update)


def meta_sgd(
    apply_fn: Callable,
    loss_fn: LossFn,
    *,
    inner_lr: float = 0.01,
    num_steps: int = 1,
    first_order: bool = False,
    remat: bool = False,
    unroll: int | bool = 1,
    adapt_params: MaskSpec = None,
    transductive: bool | None = None,
    metrics: MetricFns | None = None,
) -> MetaLearner:
    r"""Meta-SGD.

    The meta-parameters are the init :math:`\theta` and a step size
    :math:`\alpha` of the same shape. The inner update is elementwise,

    .. math:: \phi_{k+1} = \phi_k - \alpha \odot \nabla_\phi \mathcal{L}^{s}(\phi_k),

    and both :math:`\theta` and :math:`\alpha` follow the gradient of the query
    loss :math:`\mathcal{L}^{q}(\phi_K(\theta, \alpha))`. With ``first_order``
    the inner gradients are constants, but :math:`\alpha` still learns.

    Args:
      apply_fn, loss_fn: as in :func:`~jmeta.maml`.
      inner_lr: the initial value of every step size.
      num_steps, first_order, remat, unroll, adapt_params, transductive, metrics: as in
        :func:`~jmeta.maml`. Only adapting parameters get a step size.

    Returns:
      A :class:`~jmeta.MetaLearner` whose meta-parameters are
      :class:`MetaSGDParams`.

    Example:
      >>> import jax, jmeta
      >>> model = jmeta.models.mlp((1, 40, 40, 1))
      >>> learner = jmeta.meta_sgd(model.apply, jmeta.losses.mse, inner_lr=0.01)
      >>> meta_params = learner.init(model.init(jax.random.key(0)))
      >>> meta_params.learning_rates["head"]["bias"]
      Array([0.01], dtype=float32)
    """

    check_real("inner_lr", inner_lr)

    def init(params: Params) -> MetaSGDParams:
        mask = resolve_mask(params, adapt_params)
        adapting, _ = partition(params, mask)
        rates = jax.tree_util.tree_map(lambda p: jax.numpy.full_like(p, inner_lr), adapting)
        return MetaSGDParams(params, rates)

    def unpack(meta_params: MetaSGDParams):
        return meta_params.params, scale_by_learning_rates(meta_params.learning_rates)

    return gradient_based_learner(
        apply_fn,
        loss_fn,
        init=init,
        unpack=unpack,
        num_steps=num_steps,
        first_order=first_order,
        remat=remat,
        unroll=unroll,
        adapt_params=adapt_params,
        transductive=transductive,
        metrics=metrics,
    )
