r"""Sinusoid regression tasks, exactly as in the MAML paper (Finn et al. 2017, 5.1).

Each task is :math:`y = A \sin(x - \varphi)` with amplitude
:math:`A \sim U[0.1, 5]`, phase :math:`\varphi \sim U[0, \pi]`, and inputs
:math:`x \sim U[-5, 5]`; support and query are independent draws of ``K`` points.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jmeta.types import Array, Batch, PRNGKey, Task
from jmeta.validation import check_positive_int

AMPLITUDE_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, float(jnp.pi))
INPUT_RANGE = (-5.0, 5.0)


def sinusoid_params(key: PRNGKey) -> tuple[Array, Array]:
    """The amplitude and phase of the task :func:`sinusoid` draws from ``key``."""
    amp_key, phase_key = jax.random.split(jax.random.fold_in(key, 0))
    amplitude = jax.random.uniform(
        amp_key, (), minval=AMPLITUDE_RANGE[0], maxval=AMPLITUDE_RANGE[1]
    )
    phase = jax.random.uniform(phase_key, (), minval=PHASE_RANGE[0], maxval=PHASE_RANGE[1])
    return amplitude, phase


def sinusoid(key: PRNGKey, data: Any = None, *, num_support: int = 10, num_query: int = 10) -> Task:
    """Sample one sinusoid regression task.

    A pure function of ``key``: jittable and vmappable, so batches of tasks are
    drawn inside a compiled meta-step (see :func:`jmeta.tasks.sample_tasks`).

    Args:
      key: a PRNG key.
      data: ignored: sinusoid tasks need no data set. The argument is there so
        that ``sinusoid`` is a task sampler ``(key, data) -> Task`` like any other.
      num_support: support points ``K`` (10 in the MAML paper's 10-shot setting).
      num_query: query points.

    Returns:
      ``Task(support=Batch(x [K, 1], y [K, 1]), query=Batch(x [Q, 1], y [Q, 1]))``.

    Example:
      >>> import jax, jmeta
      >>> task = jmeta.tasks.sinusoid(jax.random.key(0), num_support=5, num_query=3)
      >>> task.support.x.shape, task.query.y.shape
      ((5, 1), (3, 1))
    """
    del data
    num_support = check_positive_int("num_support", num_support)
    num_query = check_positive_int("num_query", num_query)
    amplitude, phase = sinusoid_params(key)
    x = jax.random.uniform(
        jax.random.fold_in(key, 1),
        (num_support + num_query, 1),
        minval=INPUT_RANGE[0],
        maxval=INPUT_RANGE[1],
    )
    y = amplitude * jnp.sin(x - phase)
    return Task(Batch(x[:num_support], y[:num_support]), Batch(x[num_support:], y[num_support:]))
