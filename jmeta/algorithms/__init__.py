"""Meta-learning algorithms, each a builder returning a :class:`~jmeta.MetaLearner`."""

from jmeta.algorithms.anil import anil, boil
from jmeta.algorithms.gradient_based import WithReference, gradient_based_learner
from jmeta.algorithms.maml import fomaml, maml
from jmeta.algorithms.meta_sgd import MetaSGDParams, meta_sgd, scale_by_learning_rates

__all__ = [
    "MetaSGDParams",
    "WithReference",
    "anil",
    "boil",
    "fomaml",
    "gradient_based_learner",
    "maml",
    "meta_sgd",
    "scale_by_learning_rates",
]
