"""Checks of arguments, shapes and labels, with messages that name the argument.

Hyperparameters are checked when a builder is called. Shapes and dtypes are
static under ``jit``, so their checks cost nothing: they run once, when the
function is traced. Label values are not static: :func:`labels_valid` raises
at once for concrete labels and otherwise returns a boolean that learners
report as ``metrics["labels_valid"]`` (see :func:`jmeta.meta_train_step`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

import jax
import jax.numpy as jnp
import numpy as np

from jmeta.types import Array, Batch, Task


def is_integer(value: object) -> TypeGuard[int | np.integer]:
    """Whether ``value`` is a Python or NumPy integer (``True`` and ``False`` are not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def check_positive_int(name: str, value: object, *, allow_zero: bool = False) -> int:
    """Return ``value`` as an int, or raise naming ``name``."""
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__}).")
    lowest = 0 if allow_zero else 1
    if value < lowest:
        raise ValueError(f"{name} must be >= {lowest}; got {value}.")
    return int(value)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool, or raise a ``TypeError`` naming ``name``."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")
    return bool(value)


def check_real(name: str, value: Any, *, positive: bool = True, allow_zero: bool = False) -> Any:
    """Check a real hyperparameter: finite, and ``> 0`` (or ``>= 0``) when ``positive``.

    Python and NumPy numbers and concrete scalar arrays are checked and
    returned unchanged; traced values (a learner built inside ``jit`` or
    ``vmap`` over a hyperparameter) pass unchecked.

    Raises:
      TypeError: not a real number (``None``, a string, a complex number, an
        array of several values).
      ValueError: NaN, infinite, or out of range.
    """
    if isinstance(value, jax.core.Tracer):
        return value
    ok_type = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(value, np.ndarray | jax.Array):
        ok_type = value.shape == () and (
            jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)
        )
    if not ok_type:
        raise TypeError(f"{name} must be a real number; got {value!r} ({type(value).__name__}).")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number; got {number}.")
    if positive and (number < 0 or (number == 0 and not allow_zero)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}; got {number}.")
    return value


def check_learning_rate(name: str, value: Any) -> Any:
    """A step size: a finite number ``> 0`` (see :func:`check_real`), or an optax schedule."""
    if callable(value):
        return value
    return check_real(name, value)


def check_callable(name: str, value: Any, what: str) -> Callable:
    """Return ``value`` if it is callable, else raise a ``TypeError`` saying ``what`` it must be."""
    if not callable(value):
        raise TypeError(f"{name} must be {what}; got {value!r} ({type(value).__name__}).")
    return value


def check_optimizer(name: str, value: Any) -> Any:
    """Check that ``value`` is an optax ``GradientTransformation`` (``init`` and ``update``)."""
    if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
        hint = " (call it: optax.adam(1e-3), not optax.adam)" if callable(value) else ""
        raise TypeError(
            f"{name} must be an optax.GradientTransformation with init and update; got "
            f"{value!r} ({type(value).__name__}){hint}."
        )
    return value


def check_metric_fns(name: str, metrics: Any) -> dict[str, Callable]:
    """``metrics`` as a dict ``{name: (predictions, targets) -> scalar}``; ``None`` is ``{}``."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"{name} must be a mapping {{name: (predictions, targets) -> scalar}}; got "
            f"{type(metrics).__name__}."
        )
    for key, fn in metrics.items():
        if not isinstance(key, str) or not callable(fn):
            raise TypeError(
                f"{name} must map names (str) to functions (predictions, targets) -> scalar; "
                f"got {key!r}: {fn!r}."
            )
    return dict(metrics)


def labels_valid(name: str, labels: Array, num_classes: int) -> Array:
    """Whether integer ``labels`` all lie in ``[0, num_classes)``, as a boolean scalar.

    Concrete labels are checked at once: out-of-range ones raise a
    ``ValueError`` naming ``name``. Traced labels (under ``jit``, ``vmap``)
    cannot raise; the returned boolean is the check, computed on device for
    the cost of one comparison per label.

    Raises:
      TypeError: ``labels`` are not integers (fractional labels cannot be
        class indices).
      ValueError: concrete labels out of range.
    """
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"{name} must be integer class labels; got dtype {labels.dtype} (cast labels "
            "that are whole numbers with .astype(jnp.int32); fractional ones are not classes)."
        )
    try:
        values = np.asarray(labels)
    except jax.errors.TracerArrayConversionError:
        return jnp.all((labels >= 0) & (labels < num_classes))
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) for {num_classes} classes; found labels "
            f"in [{int(values.min())}, {int(values.max())}]."
        )
    return jnp.array(True)


def check_batch(name: str, batch: Batch, *, batched: bool = False) -> None:
    """Check that ``batch.x`` and ``batch.y`` agree on the number of examples.

    Args:
      name: how the caller calls this batch (``"support"``, ``"tasks.query"``).
      batch: the batch.
      batched: ``True`` when leaves carry a leading task axis.
    """
    if not isinstance(batch, Batch):
        raise TypeError(f"{name} must be a jmeta.Batch(x, y); got {type(batch).__name__}.")
    lead = 2 if batched else 1
    layout = "[tasks, n, ...]" if batched else "[n, ...]"
    for field in ("x", "y"):
        arr = getattr(batch, field)
        if not hasattr(arr, "shape") or len(arr.shape) < lead:
            raise ValueError(
                f"{name}.{field} must be an array of shape {layout}; got "
                f"{getattr(arr, 'shape', type(arr).__name__)}."
            )
    x_lead, y_lead = batch.x.shape[:lead], batch.y.shape[:lead]
    if x_lead != y_lead:
        raise ValueError(
            f"{name}.x and {name}.y must agree on the leading {layout} dimensions; "
            f"got x {batch.x.shape} and y {batch.y.shape}."
        )
    if batch.x.shape[lead - 1] == 0:
        raise ValueError(f"{name} is empty: {name}.x has shape {batch.x.shape}.")


def check_task(task: Task, *, batched: bool = False) -> None:
    """Check a task (or a batch of tasks, with ``batched=True``).

    Support and query must be non-empty and agree on the per-example input and
    target shapes; a batch of tasks must have the same number of tasks
    everywhere.
    """
    if not isinstance(task, Task):
        raise TypeError(f"expected a jmeta.Task(support, query); got {type(task).__name__}.")
    where = "tasks" if batched else "task"
    check_batch(f"{where}.support", task.support, batched=batched)
    check_batch(f"{where}.query", task.query, batched=batched)
    lead = 2 if batched else 1
    for field in ("x", "y"):
        s, q = getattr(task.support, field), getattr(task.query, field)
        if s.shape[lead:] != q.shape[lead:]:
            raise ValueError(
                f"{where}.support.{field} and {where}.query.{field} must have the same "
                f"per-example shape; got {s.shape[lead:]} (support {s.shape}) and "
                f"{q.shape[lead:]} (query {q.shape})."
            )
        if s.dtype != q.dtype:
            raise TypeError(
                f"{where}.support.{field} and {where}.query.{field} must have the same dtype "
                f"(uint8 images are scaled to [0, 1], float ones are not); got {s.dtype} "
                f"and {q.dtype}."
            )
    if batched:
        sizes = {leaf.shape[0] for leaf in jax.tree_util.tree_leaves(task)}
        if len(sizes) != 1:
            raise ValueError(
                f"every leaf of a batch of tasks must have the same leading task axis; "
                f"got sizes {sorted(sizes)}."
            )
        if 0 in sizes:
            raise ValueError("the batch of tasks is empty (0 tasks).")
