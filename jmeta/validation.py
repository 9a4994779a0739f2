"""Shape checks with messages that name the argument and the expected shape.

The checks read only static shapes, so they cost nothing inside ``jit``: they
run once, when the function is traced.
"""

from __future__ import annotations

import numbers

import jax

from jmeta.types import Batch, Task


def check_positive_int(name: str, value: object, *, allow_zero: bool = False) -> int:
    """Return ``value`` as an int, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__}).")
    lowest = 0 if allow_zero else 1
    if value < lowest:
        raise ValueError(f"{name} must be >= {lowest}; got {value}.")
    return int(value)


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
    if batched:
        sizes = {leaf.shape[0] for leaf in jax.tree_util.tree_leaves(task)}
        if len(sizes) != 1:
            raise ValueError(
                f"every leaf of a batch of tasks must have the same leading task axis; "
                f"got sizes {sorted(sizes)}."
            )
        if 0 in sizes:
            raise ValueError("the batch of tasks is empty (0 tasks).")
