r"""R2D2: a differentiable closed-form ridge-regression head on learned features.

Bertinetto, Henriques, Torr and Vedaldi, *Meta-learning with differentiable
closed-form solvers*, ICLR 2019. https://arxiv.org/abs/1805.08136
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.scipy.linalg

from jmeta.algorithms.gradient_based import MetricFns
from jmeta.algorithms.metric_based import metric_learner, positive_scalar
from jmeta.types import ApplyFn, Array, MetaLearner


def r2d2(
    embed_fn: ApplyFn,
    *,
    num_classes: int | None = None,
    shots: int | None = None,
    lam: float = 1.0,
    learn_lam: bool = True,
    scale: float = 1.0,
    bias: bool = True,
    transductive: bool | None = None,
    metrics: MetricFns | None = None,
) -> MetaLearner:
    r"""Ridge Regression Differentiable Discriminator.

    The meta-parameters are the embedding network :math:`f_\theta`, the ridge
    penalty :math:`\lambda` and the logit scale :math:`\alpha`. With the
    :math:`n` support embeddings :math:`X \in \mathbb{R}^{n \times D}`, a
    column of ones appended (:math:`\tilde X = [X, \mathbf{1}]`, for a
    per-class bias), and one-hot labels :math:`Y \in \mathbb{R}^{n \times N}`,
    a task's classifier is the ridge solution

    .. math:: \begin{bmatrix} W \\ b^\top \end{bmatrix}
              = \arg\min_{\tilde W} \tfrac{1}{n} \lVert \tilde X \tilde W - Y \rVert^2
                + \lambda \lVert \tilde W \rVert^2
              = \tilde X^\top (\tilde X \tilde X^\top + n \lambda I_n)^{-1} Y,

    in its Woodbury form: an :math:`n \times n` Cholesky solve, so the cost
    grows with the number of support examples, not with the feature size
    :math:`D`. A query :math:`x` gets the logits
    :math:`\alpha\, (f_\theta(x)^\top W + b)`, trained with the query
    cross-entropy; gradients flow through the solve to :math:`\theta`,
    :math:`\lambda` and :math:`\alpha`. Embeddings are used in at least
    float32.

    Compared with the authors' code (github.com/bertinetto/r2d2):

    * Same: the per-class bias :math:`b` solved with :math:`W` by appending a
      constant feature (penalised by :math:`\lambda` like :math:`W`); the
      :math:`\tfrac1n` scaling of the data term (that code divides features
      and targets by :math:`\sqrt n`), which makes :math:`\lambda` mean the
      same for 5-way and 20-way support sets; a learned scale :math:`\alpha`.
    * Left out: that code also adds a learned scalar to every logit. Softmax
      is shift-invariant, so such a scalar changes no prediction or loss and
      its gradient is exactly zero.
    * Different defaults: that code's configuration fixes :math:`\lambda = 50`
      (not learned) and starts :math:`\alpha` at :math:`10^{-4}`
      (miniImageNet, CIFAR-FS) or 10 (its Omniglot scripts); jmeta learns
      :math:`\lambda` from 1 and starts :math:`\alpha` at 1. Its embedding
      network concatenates the features of its last two blocks; here the
      features are whatever ``embed_fn`` returns. It switches to the
      :math:`(D+1) \times (D+1)` primal solve when :math:`n > D + 1`; the
      solution is the same.

    Args:
      embed_fn: ``(params, x [n, ...]) -> [n, D]`` embeddings.
      num_classes, shots: exactly one; as in :func:`~jmeta.protonet`.
      lam: the initial (or fixed) :math:`\lambda > 0`.
      learn_lam: meta-learn :math:`\lambda` (stored as ``log_lam``).
      scale: the initial :math:`\alpha > 0` (learned, stored as ``log_scale``).
      bias: solve a per-class bias with the weights (the constant feature);
        ``False`` fits :math:`W` on :math:`X` alone.
      transductive: as in :func:`~jmeta.protonet`.
      metrics: extra query metrics; accuracy is always reported.

    Returns:
      A :class:`~jmeta.MetaLearner` whose meta-parameters are
      :class:`~jmeta.algorithms.MetricParams`; ``adapt`` returns a
      :class:`~jmeta.algorithms.FittedClassifier` whose ``state`` is
      :math:`\tilde W` ``[D + 1, N]`` (its last row is :math:`b`; ``[D, N]``
      with ``bias=False``).

    Example:
      >>> import jax, jmeta
      >>> embedding = jmeta.models.mlp((64, 128, 32))
      >>> learner = jmeta.r2d2(embedding.apply, num_classes=5)
      >>> sorted(learner.init(embedding.init(jax.random.key(0))).classifier)
      ['log_lam', 'log_scale']
    """
    if not isinstance(bias, bool):
        raise TypeError(
            f"bias must be True (a per-class bias solved with the ridge weights) or False; "
            f"got {bias!r}. (A learned scalar added to every logit has no effect under "
            "softmax and is not offered.)"
        )
    lam_init, read_lam = positive_scalar("lam", lam, learn_lam)
    scale_init, read_scale = positive_scalar("scale", scale, True)

    def fit(classifier, embeddings: Array, one_hot: Array) -> Array:
        n = embeddings.shape[0]
        if bias:
            embeddings = jnp.concatenate([embeddings, jnp.ones_like(embeddings[:, :1])], axis=1)
        return ridge_weights(embeddings, one_hot, n * read_lam(classifier))

    def logits(classifier, weights: Array, embeddings: Array) -> Array:
        out = embeddings @ weights[:-1] + weights[-1] if bias else embeddings @ weights
        return read_scale(classifier) * out

    return metric_learner(
        embed_fn,
        classifier_init={**lam_init, **scale_init},
        fit=fit,
        logits=logits,
        num_classes=num_classes,
        shots=shots,
        metrics=metrics,
        transductive=transductive,
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
