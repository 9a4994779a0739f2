"""jmeta: meta-learning as pure, compiled JAX functions.

A meta-learning algorithm is a :class:`MetaLearner`, a bundle of pure
functions built by a lowercase builder (:func:`maml`, :func:`meta_sgd`, ...).
:func:`meta_train_step` turns one into an optax-driven meta-step, compiled
whole by :func:`jit_step` or :func:`scan_steps`.
"""

from jmeta import algorithms, datasets, losses, models, parallel, params, precision, tasks
from jmeta.algorithms import (
    anil,
    baseline,
    boil,
    cavia,
    fomaml,
    imaml,
    maml,
    mamlpp,
    matching_net,
    meta_sgd,
    protonet,
    r2d2,
    reptile,
)
from jmeta.evaluation import Estimate, evaluate, mean_ci
from jmeta.inner import InnerLoopResult, inner_loop
from jmeta.params import path_mask
from jmeta.step import (
    MetaTrainState,
    MetaTrainStep,
    batched_meta_loss,
    evaluate_tasks,
    jit_step,
    meta_gradient,
    meta_train_step,
    scan_steps,
)
from jmeta.types import Batch, MetaLearner, Model, Task

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Estimate",
    "InnerLoopResult",
    "MetaLearner",
    "MetaTrainState",
    "MetaTrainStep",
    "Model",
    "Task",
    "algorithms",
    "datasets",
    "anil",
    "baseline",
    "batched_meta_loss",
    "boil",
    "cavia",
    "evaluate",
    "evaluate_tasks",
    "fomaml",
    "imaml",
    "inner_loop",
    "jit_step",
    "losses",
    "maml",
    "mamlpp",
    "matching_net",
    "mean_ci",
    "models",
    "meta_gradient",
    "meta_sgd",
    "meta_train_step",
    "parallel",
    "params",
    "path_mask",
    "precision",
    "protonet",
    "r2d2",
    "reptile",
    "scan_steps",
    "tasks",
]
