"""The machinery shared by the metric-based family (ProtoNets, Matching Nets, R2D2).

These learners have no inner optimisation loop. A task's support set is
embedded, a classifier is *fitted* to the embeddings in closed form (class
means, the support set itself, ridge weights), and query embeddings are
scored against it. Each algorithm is fixed by two functions:

- ``fit(classifier, embeddings [n, D], one_hot [n, N]) -> state``
- ``logits(classifier, state, embeddings [m, D]) -> [m, N]``

where ``classifier`` holds the algorithm's meta-learned scalars (a learned
scale, bias or ridge penalty; empty when there are none). Everything else
(embedding, labels, the cross-entropy meta-loss, metrics) is written once, here.

The number of classes ``N`` must be static under ``jit``. Give it as
``num_classes`` (fixed N-way tasks), or give ``shots`` and ``N`` is read from
the support set's static shape as ``n_support // shots`` (balanced tasks; one
learner then trains 20-way and tests 5-way). Labels are ``0 .. N-1``.

What the shapes say is checked when the learner is traced: ``N >= 2``, no more
classes than support examples, ``n_support`` a multiple of ``shots``. What the
label values say is checked too: every support and query label in
``[0, N)``, and every class with exactly ``shots`` support examples (with
``shots``) or at least one (with ``num_classes``). Concrete labels that fail
raise a ``ValueError`` naming ``support.y`` or ``task.query.y``; under ``jit``
the fitted classifier becomes NaN (so are the predictions and the loss) and
``metrics["labels_valid"]`` is ``False``, which :func:`jmeta.meta_train_step`
reports and skips.

Batch norm: the embedding network's policy (:mod:`jmeta.models.policy`) is
followed. With a ``batch_norm="support"`` network the support set is embedded
with its own statistics and queries with ``reference=support.x``, so a query's
prediction does not depend on the other queries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jmeta._dtypes import as_at_least_float32, tree_at_least_float32
from jmeta.algorithms.gradient_based import MetricFns, query_metrics
from jmeta.losses import accuracy, cross_entropy
from jmeta.models.policy import resolve_transductive
from jmeta.types import ApplyFn, Array, Batch, MetaLearner, Metrics, Params, Task
from jmeta.validation import (
    check_batch,
    check_bool,
    check_callable,
    check_metric_fns,
    check_positive_int,
    check_real,
    check_task,
    labels_valid,
)


class MetricParams(NamedTuple):
    """Meta-parameters of a metric-based learner.

    Attributes:
      embedding: the embedding network's parameters.
      classifier: the learned scalars of the classifier on top, by name
        (e.g. ``{"log_scale": ...}``); empty when nothing else is learned.
    """

    embedding: Params
    classifier: dict[str, Array]


class FittedClassifier(NamedTuple):
    """What ``adapt`` returns: everything ``predict`` needs for one task.

    Attributes:
      embedding: the embedding network's parameters.
      classifier: the learned scalars (as in :class:`MetricParams`).
      state: the classifier fitted to the support set (prototypes, support
        embeddings, ridge weights).
      reference: the support inputs whose batch-norm statistics normalise the
        queries (a ``batch_norm="support"`` embedding network), else ``None``.
    """

    embedding: Params
    classifier: dict[str, Array]
    state: Any
    reference: Array | None = None


def metric_learner(
    embed_fn: ApplyFn,
    *,
    classifier_init: Mapping[str, float],
    fit: Callable[[dict, Array, Array], Any],
    logits: Callable[[dict, Any, Array], Array],
    num_classes: int | None,
    shots: int | None,
    metrics: MetricFns | None,
    transductive: bool | None = None,
) -> MetaLearner:
    """Build a :class:`~jmeta.MetaLearner` from a closed-form classifier.

    Args:
      embed_fn: ``(params, x [n, ...]) -> embeddings [n, D]``.
      classifier_init: initial values of the learned scalars (``{}`` for
        none); they are float32 (float64 for a float64 embedding network).
      fit: ``(classifier, support_embeddings, one_hot) -> state``.
      logits: ``(classifier, state, query_embeddings) -> [m, N]``.
      num_classes, shots: exactly one; see the module docstring.
      metrics: extra ``{name: (logits, labels) -> scalar}`` on the query set;
        ``accuracy`` is always reported.
      transductive: ``None`` (default) follows the batch-norm policy the
        embedding network states; ``True`` embeds queries alone, ``False``
        with ``reference=support.x``. A value that contradicts the network's
        policy raises a ``ValueError``.

    Returns:
      A :class:`~jmeta.MetaLearner` whose meta-parameters are
      :class:`MetricParams`. ``adapt`` ignores ``key`` and ``num_steps``
      (there is no inner loop) and returns a :class:`FittedClassifier`;
      ``evaluate`` has no ``*_before`` metrics and reports
      ``labels_valid`` (see the module docstring).
    """
    check_callable("embed_fn", embed_fn, "a function (params, x) -> [n, features] embeddings")
    ways = _num_classes_rule(num_classes, shots)
    metric_fns = {"accuracy": accuracy, **check_metric_fns("metrics", metrics)}
    initial = dict(classifier_init)
    transductive = resolve_transductive(embed_fn, transductive)

    def init(params: Params) -> MetricParams:
        dtype = tree_at_least_float32(params)
        return MetricParams(params, {k: jnp.asarray(v, dtype) for k, v in initial.items()})

    def fit_support(meta_params: MetricParams, support: Batch) -> tuple[FittedClassifier, Array]:
        check_batch("support", support)
        n_classes = ways(support)
        valid = _support_labels_valid(support.y, n_classes, shots)
        embeddings = _embed(embed_fn, meta_params.embedding, support.x)  # its own statistics
        one_hot = jax.nn.one_hot(support.y, n_classes, dtype=embeddings.dtype)
        state = fit(meta_params.classifier, embeddings, one_hot)
        # Labels that do not fit make the classifier NaN rather than silently wrong.
        state = jax.tree_util.tree_map(lambda a: jnp.where(valid, a, jnp.nan), state)
        reference = None if transductive else support.x
        fitted = FittedClassifier(meta_params.embedding, meta_params.classifier, state, reference)
        return fitted, valid

    def adapt(meta_params: MetricParams, support: Batch, key=None, num_steps=None):
        del key, num_steps  # no inner loop
        return fit_support(meta_params, support)[0]

    def predict(adapted: FittedClassifier, x: Array) -> Array:
        embeddings = _embed(embed_fn, adapted.embedding, x, adapted.reference)
        return logits(adapted.classifier, adapted.state, embeddings)

    def evaluate(meta_params: MetricParams, task: Task, key=None, num_steps=None) -> Metrics:
        check_task(task)
        adapted, valid = fit_support(meta_params, task.support)
        scores = predict(adapted, task.query.x)
        valid = valid & labels_valid("task.query.y", task.query.y, scores.shape[-1])
        out = query_metrics(cross_entropy, metric_fns, scores, task.query.y)
        out["labels_valid"] = valid
        return out

    def meta_loss(meta_params: MetricParams, task: Task, key=None) -> tuple[Array, Metrics]:
        out = evaluate(meta_params, task, key)
        return out["loss"], out

    return MetaLearner(init, adapt, predict, meta_loss, evaluate)


def _num_classes_rule(num_classes: int | None, shots: int | None) -> Callable[[Batch], int]:
    """``(support) -> N``, checking what the support set's static shape says."""
    if (num_classes is None) == (shots is None):
        raise ValueError(
            "give exactly one of num_classes (fixed N-way tasks) or shots (N read from "
            "the support set as n_support // shots, for balanced tasks)."
        )
    if num_classes is not None:
        num_classes = check_positive_int("num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 for classification; got {num_classes}.")

        def fixed(support: Batch) -> int:
            n = support.y.shape[0]
            if num_classes > n:
                raise ValueError(
                    f"num_classes={num_classes} but the support set has {n} examples: at "
                    "least one class has no support example."
                )
            return num_classes

        return fixed
    shots = check_positive_int("shots", shots)

    def from_shape(support: Batch) -> int:
        n = support.y.shape[0]
        if n % shots:
            raise ValueError(
                f"support has {n} examples, not a multiple of shots={shots}: the number "
                "of classes cannot be inferred; pass num_classes instead."
            )
        if n // shots < 2:
            raise ValueError(
                f"shots={shots} with {n} support examples gives {n // shots} class; a task "
                "needs at least 2 (shots is the number of support examples per class)."
            )
        return n // shots

    return from_shape


def _support_labels_valid(labels: Array, num_classes: int, shots: int | None) -> Array:
    """Labels in ``[0, N)``; every class ``shots`` times (or at least once without ``shots``).

    Raises for concrete labels (naming ``support.y``); returns a boolean for traced ones.
    """
    in_range = labels_valid("support.y", labels, num_classes)
    counts = jnp.sum(labels[:, None] == jnp.arange(num_classes, dtype=labels.dtype), axis=0)
    filled = jnp.all(counts == shots) if shots is not None else jnp.all(counts >= 1)
    try:
        ok, found = bool(filled), np.asarray(counts)
    except jax.errors.ConcretizationTypeError:
        return in_range & filled
    if not ok:
        need = f"exactly shots={shots}" if shots is not None else "at least one"
        raise ValueError(
            f"support.y must give each of the {num_classes} classes {need} support "
            f"example(s); the class counts are {found.tolist()}."
        )
    return in_range & filled


def _embed(embed_fn: Callable, params: Params, x: Array, reference: Array | None = None) -> Array:
    if reference is None:
        embeddings = embed_fn(params, x)
    else:
        embeddings = embed_fn(params, x, reference=reference)
    if embeddings.ndim != 2:
        raise ValueError(
            f"embed_fn must return [n, features] embeddings; got shape {embeddings.shape} "
            f"for inputs of shape {x.shape} (flatten the features)."
        )
    # Distances, similarities and solves are computed in at least float32.
    return as_at_least_float32(embeddings)


def squared_norm(x: Array) -> Array:
    """Row-wise squared Euclidean norm, ``[n, D] -> [n]``."""
    return jnp.sum(x * x, axis=-1)


def l2_normalize(x: Array, eps: float = 1e-8) -> Array:
    """Rows scaled to unit length (rows of zeros stay zero)."""
    return x * jax.lax.rsqrt(jnp.maximum(squared_norm(x), eps * eps))[:, None]


def positive_scalar(
    name: str, value: float, learn: bool
) -> tuple[dict[str, float], Callable[[dict], Array | float]]:
    """A positive classifier scalar, learned (as its log) or fixed.

    Returns:
      ``(initial, read)``: the entry to add to the classifier's initial values
      (``{"log_<name>": log(value)}``, or ``{}`` when fixed) and
      ``read(classifier) -> value``.
    """
    check_real(name, value)
    check_bool(f"learn_{name}", learn)
    if not learn:
        return {}, lambda classifier: value
    key = f"log_{name}"
    return {key: float(np.log(value))}, lambda classifier: jnp.exp(classifier[key])
