"""jmeta: meta-learning as pure, compiled JAX functions."""

from jmeta.types import Batch, MetaLearner, Model, Task

__version__ = "0.1.0"

__all__ = ["Batch", "MetaLearner", "Model", "Task"]
