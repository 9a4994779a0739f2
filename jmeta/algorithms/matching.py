r"""Matching Networks: attention over the support set with cosine similarity.

Vinyals, Blundell, Lillicrap, Kavukcuoglu and Wierstra, *Matching Networks for
One Shot Learning*, NeurIPS 2016. https://arxiv.org/abs/1606.04080
"""

from __future__ import annotations

import jax

from jmeta.algorithms.gradient_based import MetricFns
from jmeta.algorithms.metric_based import l2_normalize, metric_learner, positive_scalar
from jmeta.types import ApplyFn, Array, MetaLearner


def matching_net(
    embed_fn: ApplyFn,
    *,
    num_classes: int | None = None,
    shots: int | None = None,
    scale: float = 1.0,
    learn_scale: bool = False,
    transductive: bool | None = None,
    metrics: MetricFns | None = None,
) -> MetaLearner:
    r"""Matching Networks (the simple form, without full context embeddings).

    The meta-parameters are one embedding network :math:`f_\theta`, shared by
    support and query (the paper's :math:`f = g`). A query :math:`x` attends
    over the support examples :math:`(x_i, y_i)` with a softmax of scaled
    cosine similarities, and its class probabilities are the attention-weighted
    one-hot labels,

    .. math:: a_i(x) = \operatorname{softmax}_i\big(s \cos(f_\theta(x), f_\theta(x_i))\big),
              \qquad p_k(x) = \sum_{i:\, y_i = k} a_i(x).

    The logits returned are :math:`\log p_k(x)`, computed stably as
    :math:`\operatorname{logsumexp}_{i: y_i = k}(s \cos_i) -
    \operatorname{logsumexp}_i(s \cos_i)` (so the query cross-entropy is the
    paper's negative log-likelihood). The paper's full context embeddings
    (bidirectional LSTM over the support set, attention LSTM for the query)
    are not implemented.

    Args:
      embed_fn: ``(params, x [n, ...]) -> [n, D]`` embeddings.
      num_classes, shots: exactly one; as in :func:`~jmeta.protonet`.
      scale: the similarity scale :math:`s` (1 in the paper; cosines lie in
        ``[-1, 1]``, so a larger or learned scale sharpens the attention and
        usually trains faster).
      learn_scale: meta-learn :math:`s` (stored as ``log_scale``).
      transductive: as in :func:`~jmeta.protonet`.
      metrics: extra query metrics; accuracy is always reported.

    Returns:
      A :class:`~jmeta.MetaLearner` whose meta-parameters are
      :class:`~jmeta.algorithms.MetricParams`; ``adapt`` returns a
      :class:`~jmeta.algorithms.FittedClassifier` whose ``state`` is the
      normalised support embeddings and their one-hot labels, and
      ``predict(adapted, x)`` the log-probabilities ``[m, N]``.

    Example:
      >>> import jax, jmeta
      >>> embedding = jmeta.models.mlp((64, 128, 32))
      >>> learner = jmeta.matching_net(embedding.apply, num_classes=5)
      >>> meta_params = learner.init(embedding.init(jax.random.key(0)))
    """
    initial, read_scale = positive_scalar("scale", scale, learn_scale)

    def fit(classifier, embeddings: Array, one_hot: Array) -> tuple[Array, Array]:
        return l2_normalize(embeddings), one_hot

    def logits(classifier, support: tuple[Array, Array], embeddings: Array) -> Array:
        keys, one_hot = support
        sim = read_scale(classifier) * (l2_normalize(embeddings) @ keys.T)  # [m, n]
        per_class = jax.nn.logsumexp(sim[:, :, None], axis=1, b=one_hot[None, :, :])  # [m, N]
        return per_class - jax.nn.logsumexp(sim, axis=1, keepdims=True)

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
