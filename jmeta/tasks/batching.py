"""Batches of tasks from any per-task sampler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jmeta.types import PRNGKey, Task
from jmeta.validation import check_positive_int


def sample_tasks(
    sample_fn: Callable[..., Task], key: PRNGKey, batch_size: int, data: Any = None, **kwargs
) -> Task:
    """``batch_size`` independent tasks with a leading task axis.

    Args:
      sample_fn: a task sampler ``(key, data, **kwargs) -> Task``, pure and
        vmappable (jmeta's one sampler contract: ``data`` is the pytree of
        arrays it draws from, e.g. a data set's images, or ``None``).
      key: a PRNG key; task ``t`` uses ``jax.random.split(key, batch_size)[t]``.
      batch_size: the number of tasks.
      data: passed to every ``sample_fn`` call, the same for all tasks.
      **kwargs: static arguments for ``sample_fn`` (shots, ways, ...).

    Example:
      >>> import jax, jmeta
      >>> tasks = jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid, jax.random.key(0), 25)
      >>> tasks.support.x.shape
      (25, 10, 1)
    """
    batch_size = check_positive_int("batch_size", batch_size)
    return jax.vmap(lambda k: sample_fn(k, data, **kwargs))(jax.random.split(key, batch_size))


def batch_sampler(sample_fn: Callable[..., Task], batch_size: int, **kwargs) -> Callable[..., Task]:
    """A sampler of batches: ``(key, data=None) -> batch of batch_size tasks``.

    What :func:`jmeta.scan_steps` and :func:`jmeta.parallel.sharded_scan_steps`
    take, made from a per-task sampler with :func:`sample_tasks`.

    Args:
      sample_fn: a task sampler ``(key, data, **kwargs) -> Task``.
      batch_size: tasks per batch.
      **kwargs: static arguments for ``sample_fn`` (shots, ways, ...).

    Example:
      >>> import jax, jmeta
      >>> sample = jmeta.tasks.batch_sampler(jmeta.tasks.sinusoid, 25, num_support=5)
      >>> sample(jax.random.key(0)).support.x.shape
      (25, 5, 1)
    """
    batch_size = check_positive_int("batch_size", batch_size)

    def sample(key: PRNGKey, data: Any = None) -> Task:
        return sample_tasks(sample_fn, key, batch_size, data, **kwargs)

    return sample
