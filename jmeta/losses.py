"""Losses and metrics for few-shot tasks.

Each function maps ``(predictions, targets)`` of one task to a scalar, so it can
be used as an inner-loop loss, an outer (query) loss or a reported metric.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jmeta._dtypes import as_at_least_float32
from jmeta.types import Array


def cross_entropy(logits: Array, labels: Array) -> Array:
    r"""Mean softmax cross-entropy with integer labels.

    .. math:: \ell = -\frac{1}{n}\sum_i \log \operatorname{softmax}(z_i)_{y_i}

    Args:
      logits: ``[n, num_classes]``.
      labels: ``[n]`` integers in ``[0, num_classes)``.

    Returns:
      A float32 (or the logits' dtype, at least float32) scalar. Labels out of
      range raise a ``ValueError`` when they are concrete; under ``jit`` they
      make the loss and its gradient NaN (never a finite wrong number: a
      negative label would otherwise silently pick a logit from the end).

    Example:
      >>> import jax.numpy as jnp, jmeta
      >>> float(jmeta.losses.cross_entropy(jnp.zeros((4, 2)), jnp.array([0, 1, 0, 1])))
      0.693...
    """
    _check_classification(logits, labels)
    logits = as_at_least_float32(logits)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    in_range = jnp.all((labels >= 0) & (labels < logits.shape[-1]))
    # A factor, not a select: the gradient becomes NaN too, so an inner loop
    # on such labels cannot silently leave the parameters where they were.
    return loss * jnp.where(in_range, jnp.ones((), loss.dtype), jnp.full((), jnp.nan, loss.dtype))


def accuracy(logits: Array, labels: Array) -> Array:
    """Fraction of examples whose arg-max logit is the label.

    Args:
      logits: ``[n, num_classes]``.
      labels: ``[n]`` integers.

    Returns:
      A float32 scalar in ``[0, 1]``.
    """
    _check_classification(logits, labels)
    return (jnp.argmax(logits, axis=-1) == labels).mean(dtype=jnp.float32)


def mse(predictions: Array, targets: Array) -> Array:
    r"""Mean squared error, :math:`\frac{1}{n}\sum_i \lVert f(x_i) - y_i \rVert^2`.

    The squared norm is summed over output dimensions and averaged over
    examples, so a scalar-output regressor gets the usual MSE.

    Args:
      predictions: ``[n, d]`` (or ``[n]``).
      targets: same shape as ``predictions``.

    Returns:
      A scalar of at least float32 precision.
    """
    if predictions.shape != targets.shape:
        raise ValueError(
            f"mse: predictions have shape {predictions.shape} but targets have "
            f"shape {targets.shape}; they must match."
        )
    err = as_at_least_float32(predictions) - as_at_least_float32(targets)
    return jnp.sum(err.reshape(err.shape[0], -1) ** 2, axis=-1).mean()


def _check_classification(logits: Array, labels: Array) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must be [n, num_classes]; got shape {logits.shape}.")
    if logits.shape[-1] < 2:
        raise ValueError(
            f"logits must have at least 2 classes (the model's output width); got shape "
            f"{logits.shape}."
        )
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"labels must be [n] = {logits.shape[:1]} to match logits {logits.shape}; "
            f"got shape {labels.shape}."
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"labels must be integer class indices; got dtype {labels.dtype} (fractional "
            "labels are not classes; cast whole-number ones with .astype(jnp.int32))."
        )
    try:
        values = np.asarray(labels)
    except jax.errors.TracerArrayConversionError:
        return  # traced: cross_entropy turns out-of-range labels into NaN
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= logits.shape[-1]:
        raise ValueError(
            f"labels must lie in [0, {logits.shape[-1]}) for the {logits.shape[-1]} classes "
            f"of the logits (the model's output width); found labels in [{lo}, {hi}]."
        )
