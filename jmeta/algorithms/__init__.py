"""Meta-learning algorithms, each a builder returning a :class:`~jmeta.MetaLearner`.

Gradient-based (an inner optimisation loop): :func:`maml`, :func:`fomaml`,
:func:`meta_sgd`, :func:`anil`, :func:`boil`, :func:`reptile`, :func:`imaml`,
:func:`cavia`, :func:`mamlpp`. Metric-based (a classifier fitted in closed form on embeddings):
:func:`protonet`, :func:`matching_net`, :func:`r2d2`. Transfer: :func:`baseline`.
See ``docs/algorithms.md``.
"""

from jmeta.algorithms.anil import anil, boil
from jmeta.algorithms.baseline import BaselineParams, baseline
from jmeta.algorithms.cavia import ContextParams, cavia, concat_context
from jmeta.algorithms.gradient_based import WithReference, gradient_based_learner
from jmeta.algorithms.imaml import imaml, proximal_solver
from jmeta.algorithms.maml import fomaml, maml
from jmeta.algorithms.mamlpp import MamlppParams, count_meta_steps, mamlpp, multi_step_weights
from jmeta.algorithms.matching import matching_net
from jmeta.algorithms.meta_sgd import MetaSGDParams, meta_sgd, scale_by_learning_rates
from jmeta.algorithms.metric_based import FittedClassifier, MetricParams, metric_learner
from jmeta.algorithms.protonet import protonet
from jmeta.algorithms.r2d2 import r2d2, ridge_weights
from jmeta.algorithms.reptile import reptile

__all__ = [
    "BaselineParams",
    "ContextParams",
    "FittedClassifier",
    "MamlppParams",
    "MetaSGDParams",
    "MetricParams",
    "WithReference",
    "anil",
    "baseline",
    "boil",
    "cavia",
    "concat_context",
    "count_meta_steps",
    "fomaml",
    "gradient_based_learner",
    "imaml",
    "maml",
    "mamlpp",
    "matching_net",
    "meta_sgd",
    "metric_learner",
    "multi_step_weights",
    "protonet",
    "proximal_solver",
    "r2d2",
    "reptile",
    "ridge_weights",
    "scale_by_learning_rates",
]
