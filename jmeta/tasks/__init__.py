"""Task samplers: pure functions of a PRNG key, usable inside ``jit``.

* :func:`sinusoid`: the MAML paper's sinusoid regression tasks.
* :func:`few_shot`: N-way K-shot classification tasks from a uint8 class array
  (optionally with rotations as classes and per-example augmentation from
  :mod:`jmeta.tasks.augment`).
* :func:`sample_tasks`: a batch of tasks with a leading task axis.
"""

from jmeta.tasks import augment
from jmeta.tasks.batching import sample_tasks
from jmeta.tasks.episodic import check_episode, few_shot, to_float
from jmeta.tasks.sinusoid import sinusoid, sinusoid_params

__all__ = [
    "augment",
    "check_episode",
    "few_shot",
    "sample_tasks",
    "sinusoid",
    "sinusoid_params",
    "to_float",
]
