r"""The transfer baseline: pre-train a classifier on every training class, then fit a
nearest-centroid (or linear) head on each test task's support set.

Chen, Liu, Kira, Wang and Huang, *A Closer Look at Few-shot Classification*,
ICLR 2019 (https://arxiv.org/abs/1904.04232); Wang, Chao, Weinberger and van
der Maaten, *SimpleShot: Revisiting Nearest-Neighbor Classification for
Few-Shot Learning*, 2019 (https://arxiv.org/abs/1911.04623).

Pre-training is ordinary supervised learning: a mini-batch
(:func:`pretraining_batch`: examples of all training classes with their class
indices) and the cross-entropy of a linear classifier over all ``C`` training
classes on the embedding :math:`f_\theta`. At test time the classifier is
dropped and each task is solved on the embedding, centred and L2-normalised
(SimpleShot's CL2N).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jmeta.algorithms.gradient_based import MetricFns, check_builder_args
from jmeta.algorithms.metric_based import _embed, l2_normalize, squared_norm
from jmeta.losses import accuracy, cross_entropy
from jmeta.models.policy import resolve_transductive
from jmeta.types import ApplyFn, Array, Batch, MetaLearner, Metrics, Params, PRNGKey, Task
from jmeta.validation import check_learning_rate, check_positive_int, check_task

HEADS = ("centroid", "linear")


class BaselineParams(NamedTuple):
    """The baseline's parameters.

    Attributes:
      embedding: the embedding network :math:`f_\\theta`.
      classifier: the pre-training classifier, ``{"kernel": [D, C], "bias": [C]}``.
      feature_mean: :math:`\\mu`, ``[D]``: the mean training embedding that
        centres test features (tracked during pre-training, see
        :func:`track_feature_mean`).
    """

    embedding: Params
    classifier: Params
    feature_mean: Array


class BaselineHead(NamedTuple):
    """A head fitted on one task's support set: ``logits = -|z - c|^2`` or ``z W + b``.

    Attributes:
      embedding: the embedding parameters.
      weights: the centroids ``[N, D]`` (``"centroid"``) or ``(W [D, N], b [N])`` (``"linear"``).
      feature_mean: :math:`\\mu`.
      reference: the support inputs (batch-norm statistics) or ``None``.
    """

    embedding: Params
    weights: Array | tuple[Array, Array]
    feature_mean: Array
    reference: Array | None


def cl2n(features: Array, mean: Array) -> Array:
    r"""SimpleShot's CL2N: :math:`(z - \mu) / \lVert z - \mu \rVert`, row by row."""
    return l2_normalize(features - mean)


def centroid_logits(support: Array, labels: Array, query: Array, num_classes: int) -> Array:
    r"""Nearest-centroid logits :math:`-\lVert q - c_k \rVert^2`, :math:`c_k` the mean of
    class :math:`k`'s support features (``[n, D]``, ``[n]``, ``[m, D]`` -> ``[m, N]``)."""
    onehot = jax.nn.one_hot(labels, num_classes, dtype=support.dtype)
    centroids = (onehot.T @ support) / jnp.maximum(onehot.sum(0), 1)[:, None]
    return -(squared_norm(query)[:, None] - 2 * query @ centroids.T + squared_norm(centroids)[None])


def track_feature_mean(
    optimizer: optax.GradientTransformation, rate: float = 0.01
) -> optax.GradientTransformation:
    r"""``optimizer`` for the network and classifier; an exponential moving average for
    :math:`\mu`: :math:`\mu \leftarrow \mu + \rho\,(\bar z - \mu)`, :math:`\bar z` the batch's
    mean embedding (the gradient of the baseline's centring term is :math:`\mu - \bar z`).

    Args:
      optimizer: the pre-training optimizer.
      rate: :math:`\rho`.

    Returns:
      A transform for :class:`BaselineParams`.
    """
    rate = check_learning_rate("rate", rate)

    def trainable(tree):
        # None: no leaf there, so the optimizer leaves the running mean alone.
        return tree._replace(feature_mean=None) if isinstance(tree, BaselineParams) else tree  # type: ignore[arg-type]

    def init(params):
        return optimizer.init(trainable(params))

    def update(updates, state, params=None):
        inner, state = optimizer.update(
            trainable(updates), state, None if params is None else trainable(params)
        )
        if isinstance(updates, BaselineParams):
            inner = inner._replace(feature_mean=-rate * updates.feature_mean)
        return inner, state

    return optax.GradientTransformation(init, update)


def pretraining_batch(
    key: PRNGKey,
    images: Array,
    *,
    batch_size: int,
    rotations: bool = False,
    augment: Callable[[PRNGKey, Array], Array] | None = None,
) -> Task:
    """A mini-batch of ``2 * batch_size`` examples of all classes, labelled by class index.

    Returned as a :class:`~jmeta.Task` (two halves: ``support`` and ``query``)
    so that it passes through :func:`jmeta.meta_train_step` like an episode.

    Args:
      key: a PRNG key; the batch is a pure function of it.
      images: uint8 ``[classes, examples, H, W, C]``.
      batch_size: examples per half.
      rotations: ``4 * classes`` classes, class ``4 * c + r`` being class
        ``c`` rotated by ``90 * r`` degrees (as :func:`jmeta.tasks.few_shot`).
      augment: optional ``(key, uint8 images) -> images``
        (:mod:`jmeta.tasks.augment`).
    """
    batch_size = check_positive_int("batch_size", batch_size)
    classes, examples = images.shape[:2]
    total = classes * (4 if rotations else 1)
    k_class, k_example, k_augment = jax.random.split(key, 3)
    labels = jax.random.randint(k_class, (2 * batch_size,), 0, total)
    index = jax.random.randint(k_example, (2 * batch_size,), 0, examples)
    base = labels // 4 if rotations else labels
    x = images[base, index]
    if rotations:
        turns = jnp.stack([jnp.rot90(x, k, axes=(1, 2)) for k in range(4)])
        x = turns[labels % 4, jnp.arange(2 * batch_size)]
    if augment is not None:
        x = augment(k_augment, x)
    x = x.astype(jnp.float32) / 255.0
    labels = labels.astype(jnp.int32)
    half = batch_size
    return Task(Batch(x[:half], labels[:half]), Batch(x[half:], labels[half:]))


def baseline(
    embed_fn: ApplyFn,
    *,
    num_classes: int,
    feature_dim: int,
    shots: int,
    head: str = "centroid",
    linear_steps: int = 100,
    linear_lr: float = 1.0,
    transductive: bool | None = None,
    metrics: MetricFns | None = None,
) -> MetaLearner:
    r"""The transfer baseline (Chen et al. 2019) with SimpleShot's test-time head.

    Pre-training (``meta_loss`` on a :func:`pretraining_batch`): cross-entropy of
    :math:`W^\top f_\theta(x) + b` over all ``num_classes`` training classes,
    plus :math:`\tfrac12\lVert \mu - \mathrm{sg}(\bar z)\rVert^2`, which only
    moves the centre :math:`\mu` toward the batch's mean embedding :math:`\bar z`
    (use :func:`track_feature_mean` around the optimizer for an exponential
    moving average).

    Test time (``adapt``/``evaluate`` on an N-way task): features
    :math:`\hat z = (f_\theta(x) - \mu)/\lVert f_\theta(x) - \mu \rVert` (CL2N), then

    * ``head="centroid"``: :math:`c_k` = mean of class :math:`k`'s support
      :math:`\hat z`, logits :math:`-\lVert \hat z - c_k \rVert^2`
      (:func:`centroid_logits`);
    * ``head="linear"``: softmax regression :math:`\hat z^\top V + v` fitted on
      the support set by ``linear_steps`` (or ``evaluate``'s ``num_steps``)
      gradient steps of ``linear_lr`` from zero.

    Args:
      embed_fn: ``(params, x) -> [n, D]`` (a model without its head).
      num_classes: training classes ``C`` (with rotations, four times the characters).
      feature_dim: ``D``.
      shots: support examples per class at test time (``N = n_support // shots``).
      head: ``"centroid"`` or ``"linear"``.
      linear_steps, linear_lr: the linear head's fit.
      transductive: follows the network's batch-norm policy (see
        :mod:`jmeta.models.policy`).
      metrics: extra metrics.

    Returns:
      A :class:`~jmeta.MetaLearner` over :class:`BaselineParams`.

    Example:
      >>> import jax, jmeta
      >>> from jmeta.algorithms.baseline import baseline
      >>> net = jmeta.models.conv4(None, channels=8, input_shape=(28, 28, 1))
      >>> learner = baseline(net.apply, num_classes=100, feature_dim=8, shots=1)
      >>> params = learner.init(net.init(jax.random.key(0)))
    """
    metric_fns = check_builder_args(embed_fn, cross_entropy, metrics)
    num_classes = check_positive_int("num_classes", num_classes)
    feature_dim = check_positive_int("feature_dim", feature_dim)
    shots = check_positive_int("shots", shots)
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}; got {head!r}.")
    linear_steps = check_positive_int("linear_steps", linear_steps, allow_zero=True)
    linear_lr = check_learning_rate("linear_lr", linear_lr)
    transductive = resolve_transductive(embed_fn, transductive)

    def init(params: Params) -> BaselineParams:
        dtype = jax.tree.leaves(params)[0].dtype
        classifier = {"kernel": jnp.zeros((feature_dim, num_classes), dtype),
                      "bias": jnp.zeros((num_classes,), dtype)}  # fmt: skip
        return BaselineParams(params, classifier, jnp.zeros((feature_dim,), dtype))

    def score(logits, labels, suffix=""):
        out = {"loss" + suffix: cross_entropy(logits, labels),
               "accuracy" + suffix: accuracy(logits, labels)}  # fmt: skip
        out.update({k + suffix: fn(logits, labels) for k, fn in metric_fns.items()})
        return out

    def meta_loss(meta: BaselineParams, task: Task, key=None) -> tuple[Array, Metrics]:
        del key
        check_task(task)
        x = jnp.concatenate([task.support.x, task.query.x])
        y = jnp.concatenate([task.support.y, task.query.y])
        z = _embed(embed_fn, meta.embedding, x)
        logits = z @ meta.classifier["kernel"] + meta.classifier["bias"]
        metrics_ = score(logits, y)
        gap = meta.feature_mean - jax.lax.stop_gradient(z.mean(0))
        metrics_["centre_gap"] = jnp.sqrt(jnp.sum(gap * gap))
        return metrics_["loss"] + 0.5 * jnp.sum(gap * gap), metrics_

    def features(meta, x, reference):
        return cl2n(_embed(embed_fn, meta.embedding, x, reference), meta.feature_mean)

    def fit(meta: BaselineParams, support: Batch, steps: int) -> BaselineHead:
        check_task(Task(support, support))
        ways = support.x.shape[0] // shots
        reference = None if transductive else support.x
        zs = features(meta, support.x, None if transductive else support.x)
        if head == "centroid":
            onehot = jax.nn.one_hot(support.y, ways, dtype=zs.dtype)
            centroids = (onehot.T @ zs) / jnp.maximum(onehot.sum(0), 1)[:, None]
            return BaselineHead(meta.embedding, centroids, meta.feature_mean, reference)

        def loss(wb):
            return cross_entropy(zs @ wb[0] + wb[1], support.y)

        def step(wb, _):
            grads = jax.grad(loss)(wb)
            return jax.tree.map(lambda p, g: p - linear_lr * g, wb, grads), None

        wb = (jnp.zeros((zs.shape[1], ways), zs.dtype), jnp.zeros((ways,), zs.dtype))
        wb, _ = jax.lax.scan(step, wb, None, length=steps)
        return BaselineHead(meta.embedding, wb, meta.feature_mean, reference)

    def adapt(meta, support: Batch, key=None, num_steps: int | None = None) -> BaselineHead:
        del key
        steps = linear_steps if num_steps is None else num_steps
        return fit(meta, support, check_positive_int("num_steps", steps, allow_zero=True))

    def predict(fitted: BaselineHead, x: Array) -> Array:
        zq = cl2n(_embed(embed_fn, fitted.embedding, x, fitted.reference), fitted.feature_mean)
        if head == "centroid":
            c = fitted.weights
            assert not isinstance(c, tuple)  # the centroid head's weights are one array
            return -(squared_norm(zq)[:, None] - 2 * zq @ c.T + squared_norm(c)[None])
        w, b = fitted.weights
        return zq @ w + b

    def evaluate(meta, task: Task, key=None, num_steps: int | None = None) -> Metrics:
        check_task(task)
        steps = None if head == "centroid" else num_steps
        return score(predict(adapt(meta, task.support, key, steps), task.query.x), task.query.y)

    return MetaLearner(init, adapt, predict, meta_loss, evaluate)


__all__ = [
    "BaselineHead",
    "BaselineParams",
    "baseline",
    "centroid_logits",
    "cl2n",
    "pretraining_batch",
    "track_feature_mean",
]
