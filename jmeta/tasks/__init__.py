"""Task samplers: pure functions of a PRNG key, usable inside ``jit``.

* :func:`sinusoid`: the MAML paper's sinusoid regression tasks.
* :func:`few_shot`: N-way K-shot classification tasks from a uint8 class array
  (optionally with rotations as classes and per-example augmentation from
  :mod:`jmeta.tasks.augment`).
* :func:`sample_tasks`: a batch of tasks with a leading task axis;
  :func:`batch_sampler` the same as a sampler of batches.

Every sampler follows one contract: ``(key, data) -> Task``, where ``data`` is
the pytree of arrays it draws from (a data set's images; ``None`` for
:func:`sinusoid`), passed as an argument of the compiled function.
"""

from jmeta.tasks import augment
from jmeta.tasks.batching import batch_sampler, sample_tasks
from jmeta.tasks.episodic import check_episode, few_shot, to_float
from jmeta.tasks.sinusoid import sinusoid, sinusoid_params

__all__ = [
    "augment",
    "batch_sampler",
    "check_episode",
    "few_shot",
    "sample_tasks",
    "sinusoid",
    "sinusoid_params",
    "to_float",
]
