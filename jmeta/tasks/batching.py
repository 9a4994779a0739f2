"""Batches of tasks from any per-task sampler."""

from __future__ import annotations

from collections.abc import Callable

import jax

from jmeta.types import PRNGKey, Task
from jmeta.validation import check_positive_int


def sample_tasks(sample_fn: Callable[..., Task], key: PRNGKey, batch_size: int, **kwargs) -> Task:
    """``batch_size`` independent tasks with a leading task axis.

    Args:
      sample_fn: ``(key, **kwargs) -> Task``, pure and vmappable.
      key: a PRNG key; task ``t`` uses ``jax.random.split(key, batch_size)[t]``.
      batch_size: the number of tasks.
      **kwargs: static arguments for ``sample_fn`` (shots, ways, ...).

    Example:
      >>> import jax, jmeta
      >>> tasks = jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid, jax.random.key(0), 25)
      >>> tasks.support.x.shape
      (25, 10, 1)
    """
    batch_size = check_positive_int("batch_size", batch_size)
    return jax.vmap(lambda k: sample_fn(k, **kwargs))(jax.random.split(key, batch_size))
