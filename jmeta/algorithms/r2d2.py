r"""R2D2: a differentiable closed-form ridge-regression head on learned features.

Bertinetto, Henriques, Torr and Vedaldi, *Meta-learning with differentiable
closed-form solvers*, ICLR 2019. https://arxiv.org/abs/1805.08136
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import jax.scipy.linalg

from jmeta.algorithms.gradient_based import MetricFns
from jmeta.algorithms.metric_based import metric_learner, positive_scalar
from jmeta.types import Array, MetaLearner, Params


def r2d2(
    embed_fn: Callable[[Params, Array], Array],
    *,
    num_classes: int | None = None,
    shots: int | None = None,
    lam: float = 1.0,
    learn_lam: bool = True,
    scale: float = 1.0,
    bias: float = 0.0,
    metrics: MetricFns | None = None,
) -> MetaLearner:
    r"""Ridge Regression Differentiable Discriminator.

    The meta-parameters are the embedding network :math:`f_\theta` and three
    scalars: the ridge penalty :math:`\lambda` and the logit scale
    :math:`\alpha` and bias :math:`\beta`. With the support embeddings
    :math:`X \in \mathbb{R}^{n \times D}` and one-hot labels
    :math:`Y \in \mathbb{R}^{n \times N}`, a task's classifier is the ridge
    solution in its Woodbury form,

    .. math:: W = \arg\min_W \lVert XW - Y \rVert^2 + \lambda \lVert W \rVert^2
                = X^\top (X X^\top + \lambda I_n)^{-1} Y,

    which solves an :math:`n \times n` system (Cholesky), so the cost grows
    with the number of support examples, not with the feature size :math:`D`.
    A query :math:`x` gets the logits :math:`\alpha f_\theta(x)^\top W + \beta`,
    trained with the query cross-entropy; gradients flow through the solve to
    :math:`\theta`, :math:`\lambda`, :math:`\alpha` and :math:`\beta`.
    Embeddings are used in at least float32.

    Args:
      embed_fn: ``(params, x [n, ...]) -> [n, D]`` embeddings.
      num_classes, shots: exactly one; as in :func:`~jmeta.protonet`.
      lam: the initial (or fixed) :math:`\lambda > 0`.
      learn_lam: meta-learn :math:`\lambda` (stored as ``log_lam``), as in the
        paper.
      scale: the initial :math:`\alpha > 0` (learned, stored as ``log_scale``).
      bias: the initial :math:`\beta` (learned).
      metrics: extra query metrics; accuracy is always reported.

    Returns:
      A :class:`~jmeta.MetaLearner` whose meta-parameters are
      :class:`~jmeta.algorithms.MetricParams`; ``adapt`` returns a
      :class:`~jmeta.algorithms.FittedClassifier` whose ``state`` is
      :math:`W` ``[D, N]``.

    Example:
      >>> import jax, jmeta
      >>> embedding = jmeta.models.mlp((64, 128, 32))
      >>> learner = jmeta.r2d2(embedding.apply, num_classes=5)
      >>> sorted(learner.init(embedding.init(jax.random.key(0))).classifier)
      ['bias', 'log_lam', 'log_scale']
    """
    lam_init, read_lam = positive_scalar("lam", lam, learn_lam)
    scale_init, read_scale = positive_scalar("scale", scale, True)

    def fit(classifier, embeddings: Array, one_hot: Array) -> Array:
        return ridge_weights(embeddings, one_hot, read_lam(classifier))

    def logits(classifier, weights: Array, embeddings: Array) -> Array:
        return read_scale(classifier) * (embeddings @ weights) + classifier["bias"]

    return metric_learner(
        embed_fn,
        classifier_init={**lam_init, **scale_init, "bias": bias},
        fit=fit,
        logits=logits,
        num_classes=num_classes,
        shots=shots,
        metrics=metrics,
    )


def ridge_weights(x: Array, y: Array, lam: Array | float) -> Array:
    r"""Ridge regression weights :math:`X^\top (X X^\top + \lambda I)^{-1} Y`.

    Equal to :math:`(X^\top X + \lambda I)^{-1} X^\top Y`, with an ``n x n``
    (not ``D x D``) positive-definite solve.

    Args:
      x: ``[n, D]`` inputs.
      y: ``[n, N]`` targets.
      lam: the penalty :math:`\lambda > 0`.

    Returns:
      ``[D, N]`` weights.
    """
    gram = x @ x.T + lam * jnp.eye(x.shape[0], dtype=x.dtype)
    return x.T @ jax.scipy.linalg.solve(gram, y, assume_a="pos")
