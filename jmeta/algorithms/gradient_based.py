"""The machinery shared by the gradient-based family (MAML, Meta-SGD, ANIL, ...).

Each algorithm in the family is fixed by two functions of its meta-parameters:
the initialisation the inner loop starts from, and the inner optimizer. MAML's
inner optimizer is a constant optax transform; Meta-SGD's is SGD with step
sizes that are themselves meta-parameters. Everything else (inner loop, query
loss, metrics, evaluation before and after adaptation) is written once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import optax

from jmeta.inner import InnerLoopResult, inner_loop
from jmeta.models.policy import resolve_transductive
from jmeta.params import MaskSpec, resolve_mask
from jmeta.types import Array, Batch, LossFn, MetaLearner, MetaParams, Metrics, Params, Task
from jmeta.validation import (
    check_batch,
    check_bool,
    check_callable,
    check_learning_rate,
    check_metric_fns,
    check_optimizer,
    check_positive_int,
    check_task,
    labels_valid,
)

MetricFns = Mapping[str, LossFn]
SupportLoss = Callable[[Params, Batch], Array]
InnerSolver = Callable[
    [SupportLoss, Params, optax.GradientTransformation, Batch, int], InnerLoopResult
]


class WithReference(NamedTuple):
    """Adapted parameters plus the support inputs that normalisation layers use.

    Returned by ``adapt`` when an algorithm is built with ``transductive=False``:
    query predictions are then ``apply_fn(params, x, reference=support_x)``.
    """

    params: Params
    reference: Array


def resolve_inner_optimizer(
    inner_lr: float | None, inner_optimizer: optax.GradientTransformation | None
) -> optax.GradientTransformation:
    """SGD with ``inner_lr`` unless an optax transform is given (not both).

    ``inner_lr`` must be a finite number > 0 (or an optax schedule);
    ``inner_optimizer`` an optax ``GradientTransformation``.
    """
    if (inner_lr is None) == (inner_optimizer is None):
        raise ValueError("give exactly one of inner_lr (plain SGD) or inner_optimizer.")
    if inner_optimizer is not None:
        return check_optimizer("inner_optimizer", inner_optimizer)
    return optax.sgd(check_learning_rate("inner_lr", inner_lr))


def check_builder_args(apply_fn: Callable, loss_fn: Callable, metrics: Any) -> dict:
    """Check a gradient-based builder's common arguments; returns the metrics as a dict."""
    check_callable("apply_fn", apply_fn, "a function (params, x) -> predictions")
    check_callable("loss_fn", loss_fn, "a function (predictions, targets) -> scalar")
    return check_metric_fns("metrics", metrics)


def query_metrics(
    loss_fn: LossFn, metric_fns: MetricFns, predictions: Array, targets: Array, suffix: str = ""
) -> Metrics:
    """``{"loss": loss_fn(predictions, targets), name: fn(predictions, targets), ...}``.

    The scores every learner reports on the query set, one per entry of
    ``metric_fns``, with ``suffix`` appended to each key (``"_before"``).
    """
    out = {"loss" + suffix: loss_fn(predictions, targets)}
    out.update({name + suffix: fn(predictions, targets) for name, fn in metric_fns.items()})
    return out


def before_and_after(
    adapt: Callable, predict: Callable, score: Callable[..., Metrics]
) -> Callable[..., Metrics]:
    """A learner's ``evaluate``: query scores before adaptation and after ``num_steps``.

    ``score(predictions, targets, suffix)`` scores the query set (see
    :func:`query_metrics`); the returned function also reports
    :func:`label_checks` of the adapted predictions.
    """

    def evaluate(meta_params, task: Task, key=None, num_steps: int | None = None) -> Metrics:
        check_task(task)
        before = predict(adapt(meta_params, task.support, key, 0), task.query.x)
        after = predict(adapt(meta_params, task.support, key, num_steps), task.query.x)
        return {
            **score(before, task.query.y, "_before"),
            **score(after, task.query.y),
            **label_checks(after, task),
        }

    return evaluate


def label_checks(predictions: Array, task: Task) -> Metrics:
    """``{"labels_valid": ...}`` for a classification task, ``{}`` otherwise.

    A task is treated as classification when its targets are integers ``[n]``
    and the predictions are ``[m, C]``: every support and query label must
    then be a class index in ``[0, C)``, ``C`` the model's output width.
    Concrete labels out of range raise at once; traced ones give
    ``labels_valid == False`` (see ``jmeta.validation.labels_valid``).
    """
    y = task.query.y
    if not (jnp.issubdtype(y.dtype, jnp.integer) and y.ndim == 1 and predictions.ndim == 2):
        return {}
    width = predictions.shape[-1]
    support_ok = labels_valid("task.support.y", task.support.y, width)
    return {"labels_valid": support_ok & labels_valid("task.query.y", y, width)}


def gradient_based_learner(
    apply_fn: Callable,
    loss_fn: LossFn,
    *,
    init: Callable[[Params], MetaParams],
    unpack: Callable[[MetaParams], tuple[Params, optax.GradientTransformation]],
    num_steps: int,
    first_order: bool,
    remat: bool,
    adapt_params: MaskSpec,
    transductive: bool | None,
    metrics: MetricFns | None,
    inner_solver: InnerSolver | None = None,
    unroll: int | bool = 1,
) -> MetaLearner:
    """Build a :class:`~jmeta.MetaLearner` from an init and an inner optimizer.

    Args:
      apply_fn: ``(params, x) -> predictions``; with ``transductive=False`` it
        must accept ``reference=`` (see :mod:`jmeta.models`).
      loss_fn: ``(predictions, targets) -> scalar``, used inside and outside.
      init: ``(model_params) -> meta_params``.
      unpack: ``(meta_params) -> (initial params, inner optimizer)``.
      num_steps: inner steps used by ``meta_loss`` (and by default ``adapt``).
      first_order: stop gradients through inner gradients.
      remat: checkpoint each inner step.
      unroll: inner steps per iteration of the inner ``lax.scan`` (``True``: all).
      adapt_params: which parameters adapt (``None`` for all, a path predicate
        or a bool mask; see :mod:`jmeta.params`).
      transductive: ``None`` to follow the batch-norm policy that ``apply_fn``
        states (see :mod:`jmeta.models.policy`; ``True`` for a function that
        states none); ``True`` to compute query predictions with ``apply_fn``
        alone (normalisation statistics from the query batch, as in MAML);
        ``False`` to pass the support inputs as ``reference``. A value that
        contradicts the model's policy raises a ``ValueError``.
      metrics: extra ``{name: (predictions, targets) -> scalar}`` reported on
        the query set, e.g. ``{"accuracy": jmeta.losses.accuracy}``. For
        classification tasks (integer targets ``[n]``, predictions
        ``[m, C]``) ``metrics["labels_valid"]`` reports whether every label is
        in ``[0, C)`` (see
        :func:`~jmeta.algorithms.gradient_based.label_checks`).
      inner_solver: replaces :func:`~jmeta.inner.inner_loop` (``None``: the
        differentiated loop). ``(support_loss, params, optimizer, support,
        num_steps) -> InnerLoopResult`` with ``support_loss(params, batch)`` the
        loss on a batch; it defines both the adapted parameters and, through
        any custom derivative it carries, the meta-gradient (iMAML's implicit
        gradient). ``adapt_params``, ``first_order`` and ``remat`` configure the
        default loop only and must be left off (``None``, ``False``, ``False``).
    """
    metric_fns = check_builder_args(apply_fn, loss_fn, metrics)
    train_steps = check_positive_int("num_steps", num_steps)
    first_order = check_bool("first_order", first_order)
    remat = check_bool("remat", remat)
    if not isinstance(unroll, bool):
        check_positive_int("unroll", unroll)
    transductive = resolve_transductive(apply_fn, transductive)
    if inner_solver is not None and (adapt_params is not None or first_order or remat):
        raise ValueError(
            "adapt_params, first_order and remat configure the default inner loop; "
            "with an inner_solver leave them as None, False, False."
        )

    def support_loss(params: Params, batch: Batch) -> Array:
        return loss_fn(apply_fn(params, batch.x), batch.y)

    def run_inner(meta_params, support: Batch, steps: int) -> InnerLoopResult:
        params, optimizer = unpack(meta_params)
        if inner_solver is not None:
            return inner_solver(support_loss, params, optimizer, support, steps)
        mask = None if adapt_params is None else resolve_mask(params, adapt_params)
        return inner_loop(
            lambda p: support_loss(p, support),
            params,
            optimizer,
            steps,
            mask=mask,
            first_order=first_order,
            remat=remat,
            unroll=unroll,
        )

    def wrap(params: Params, support: Batch):
        return params if transductive else WithReference(params, support.x)

    def adapt(meta_params, support: Batch, key=None, num_steps: int | None = None):
        del key  # the inner loop is deterministic
        check_batch("support", support)
        steps = train_steps if num_steps is None else num_steps
        steps = check_positive_int("num_steps", steps, allow_zero=True)
        return wrap(run_inner(meta_params, support, steps).params, support)

    def predict(adapted, x: Array) -> Array:
        if transductive:
            return apply_fn(adapted, x)
        return apply_fn(adapted.params, x, reference=adapted.reference)

    def score(predictions: Array, targets: Array, suffix: str = "") -> Metrics:
        return query_metrics(loss_fn, metric_fns, predictions, targets, suffix)

    def meta_loss(meta_params, task: Task, key=None) -> tuple[Array, Metrics]:
        del key
        check_task(task)
        result = run_inner(meta_params, task.support, train_steps)
        predictions = predict(wrap(result.params, task.support), task.query.x)
        metrics_ = {**score(predictions, task.query.y), **label_checks(predictions, task)}
        metrics_["inner_loss_first"] = result.losses[0]
        metrics_["inner_loss_last"] = result.losses[-1]
        return metrics_["loss"], metrics_

    return MetaLearner(init, adapt, predict, meta_loss, before_and_after(adapt, predict, score))
