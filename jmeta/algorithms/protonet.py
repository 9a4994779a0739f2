r"""Prototypical Networks: classify by distance to class-mean embeddings.

Snell, Swersky and Zemel, *Prototypical Networks for Few-shot Learning*,
NeurIPS 2017. https://arxiv.org/abs/1703.05175
"""

from __future__ import annotations

import jax.numpy as jnp

from jmeta.algorithms.gradient_based import MetricFns
from jmeta.algorithms.metric_based import (
    l2_normalize,
    metric_learner,
    positive_scalar,
    squared_norm,
)
from jmeta.types import ApplyFn, Array, MetaLearner

DISTANCES = ("euclidean", "cosine")


def protonet(
    embed_fn: ApplyFn,
    *,
    num_classes: int | None = None,
    shots: int | None = None,
    distance: str = "euclidean",
    scale: float | None = None,
    learn_scale: bool = False,
    transductive: bool | None = None,
    metrics: MetricFns | None = None,
) -> MetaLearner:
    r"""Prototypical Networks.

    The meta-parameters are the embedding network :math:`f_\theta`. A task's
    prototypes are the support means per class,

    .. math:: c_k = \frac{1}{|S_k|} \sum_{(x, y) \in S,\, y = k} f_\theta(x),

    and a query :math:`x` gets the logits

    .. math:: z_k(x) = -s\, \lVert f_\theta(x) - c_k \rVert^2 \quad\text{(euclidean)},
              \qquad z_k(x) = s\, \frac{f_\theta(x)^\top c_k}
              {\lVert f_\theta(x) \rVert \lVert c_k \rVert} \quad\text{(cosine)},

    trained with the query cross-entropy. The paper's model is euclidean with
    :math:`s = 1`. Squared distances are computed as
    :math:`\lVert q \rVert^2 - 2 q^\top c + \lVert c \rVert^2` (one matrix
    product per task).

    Args:
      embed_fn: ``(params, x [n, ...]) -> [n, D]`` embeddings.
      num_classes: the number of classes ``N`` of every task; or
      shots: examples per class, when ``N`` is to be read from the support
        set's static shape as ``n_support // shots`` (one learner then trains
        with more ways than it is tested with, as the paper does). Give
        exactly one; see :mod:`jmeta.algorithms.metric_based`.
      distance: ``"euclidean"`` or ``"cosine"``.
      scale: the logit scale :math:`s` (default 1 for euclidean, 10 for
        cosine, where similarities lie in ``[-1, 1]``).
      learn_scale: meta-learn :math:`s` (stored as ``log_scale``).
      transductive: ``None`` (default) follows the batch-norm policy that
        ``embed_fn`` states: with a ``batch_norm="support"`` network, queries
        are embedded with ``reference=support.x``. ``True``/``False`` must
        agree with the network (see :mod:`jmeta.models.policy`).
      metrics: extra query metrics; accuracy is always reported.

    Returns:
      A :class:`~jmeta.MetaLearner` whose meta-parameters are
      :class:`~jmeta.algorithms.MetricParams`; ``adapt`` returns a
      :class:`~jmeta.algorithms.FittedClassifier` whose ``state`` is the
      prototypes ``[N, D]``, and ``predict(adapted, x)`` the logits ``[m, N]``.
      Labels that do not fit ``N`` (out of range, a class without its support
      examples) raise, or under ``jit`` give NaN prototypes and
      ``labels_valid == False`` (see :mod:`jmeta.algorithms.metric_based`).

    Example:
      >>> import jax, jmeta
      >>> embedding = jmeta.models.mlp((64, 128, 32))      # features -> 32-d embeddings
      >>> learner = jmeta.protonet(embedding.apply, shots=5)  # 20-way train, 5-way test
      >>> meta_params = learner.init(embedding.init(jax.random.key(0)))
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}; got {distance!r}.")
    if scale is None:
        scale = 1.0 if distance == "euclidean" else 10.0
    initial, read_scale = positive_scalar("scale", scale, learn_scale)

    def fit(classifier, embeddings: Array, one_hot: Array) -> Array:
        counts = jnp.maximum(one_hot.sum(axis=0), 1.0)
        return (one_hot.T @ embeddings) / counts[:, None]

    def logits(classifier, prototypes: Array, embeddings: Array) -> Array:
        if distance == "euclidean":
            cross = embeddings @ prototypes.T
            sq = squared_norm(embeddings)[:, None] - 2.0 * cross + squared_norm(prototypes)[None, :]
            return -read_scale(classifier) * sq
        return read_scale(classifier) * (l2_normalize(embeddings) @ l2_normalize(prototypes).T)

    return metric_learner(
        embed_fn,
        classifier_init=initial,
        fit=fit,
        logits=logits,
        num_classes=num_classes,
        shots=shots,
        metrics=metrics,
        transductive=transductive,
    )
