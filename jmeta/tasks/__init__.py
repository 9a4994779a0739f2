"""Task samplers: pure functions of a PRNG key, usable inside ``jit``."""

from jmeta.tasks.batching import sample_tasks
from jmeta.tasks.sinusoid import sinusoid, sinusoid_params

__all__ = ["sample_tasks", "sinusoid", "sinusoid_params"]
