"""Core types: batches, tasks, models and meta-learners.

Everything here is a ``NamedTuple``, so every value is a pytree: it passes
through ``jit``, ``vmap``, sharding and checkpointing without special cases.
A batch of tasks is the same ``Task`` type with a leading task axis on every
leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays
MetaParams = Any  # a pytree of arrays (model params, plus step sizes for Meta-SGD, ...)
Metrics = dict[str, Array]
#: A model's forward pass, ``(params, x) -> predictions`` for a batch ``x``.
ApplyFn = Callable[[Params, Array], Array]
#: A loss or a metric, ``(predictions, targets) -> scalar``.
LossFn = Callable[[Array, Array], Array]


class Batch(NamedTuple):
    """Examples and targets.

    Attributes:
      x: inputs, ``[n, ...]``.
      y: targets, ``[n]`` integer class labels or ``[n, d]`` regression targets.
    """

    x: Array
    y: Array


class Task(NamedTuple):
    """One few-shot task: adapt on ``support``, score on ``query``.

    A batch of ``T`` tasks is a ``Task`` whose leaves have a leading axis of
    size ``T`` (``support.x`` is ``[T, n_support, ...]``).
    """

    support: Batch
    query: Batch


class Model(NamedTuple):
    """A model as an explicit pair of pure functions.

    Attributes:
      init: ``(key) -> params``.
      apply: ``(params, x) -> outputs`` for a batch ``x`` of shape ``[n, ...]``.
    """

    init: Callable[[PRNGKey], Params]
    apply: ApplyFn


class MetaLearner(NamedTuple):
    """A meta-learning algorithm as a bundle of pure functions.

    Built by a lowercase builder (``jmeta.maml(...)``, ``jmeta.meta_sgd(...)``)
    that closes over the hyperparameters, the same pattern as an optax
    ``GradientTransformation`` one level up.

    Attributes:
      init: ``(model_params) -> meta_params``. The meta-learned quantities
        (for Meta-SGD the initialisation *and* per-parameter step sizes).
      adapt: ``(meta_params, support, key, num_steps=None) -> adapted``. The
        inner loop; ``num_steps`` overrides the training value (MAML is usually
        evaluated with more steps than it is trained with).
      predict: ``(adapted, x) -> predictions``.
      meta_loss: ``(meta_params, task, key) -> (loss, metrics)``. The outer
        objective for one task; ``jax.grad`` of it is the meta-gradient.
      evaluate: ``(meta_params, task, key, num_steps=None) -> metrics``. Query
        loss (and metrics) after adaptation, and before adaptation where that
        is meaningful (``*_before`` keys).
    """

    init: Callable[[Params], MetaParams]
    adapt: Callable[..., Any]
    predict: Callable[[Any, Array], Array]
    meta_loss: Callable[[MetaParams, Task, PRNGKey], tuple[Array, Metrics]]
    evaluate: Callable[..., Metrics]
