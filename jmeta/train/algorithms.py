"""Algorithms by name: one :class:`Algorithm` record per name, in :data:`ALGORITHMS`.

A record holds the builder, a function ``(spec: LearnerSpec) -> MetaLearner``,
and what network the builder needs. A new algorithm is one record::

    from jmeta.train import register_algorithm

    register_algorithm("fomaml_adam", lambda s: jmeta.maml(
        s.model.apply, s.loss_fn, inner_optimizer=optax.adam(s.inner_lr, eps_root=1e-12),
        num_steps=s.inner_steps, first_order=True, metrics=dict(s.metrics)))

What network the entry gets is declared with it: by default the data set's
model with its head (logits); ``embedding=True`` drops the head, for learners
that classify by comparing embeddings; ``extra_inputs=n`` widens the MLP's
input by ``n`` (CAVIA's context).

The trainer builds the learner twice: with the training inner loop for
meta-training, and with the test-time step size for evaluation (the number of
test-time steps is passed to ``evaluate``). Both must accept the same
meta-parameters.
"""

from __future__ import annotations

import numbers
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import jmeta
from jmeta.algorithms.baseline import track_feature_mean
from jmeta.types import LossFn, MetaLearner, Model

if TYPE_CHECKING:  # the config checks names against this registry: it imports this module
    from jmeta.train.config import TrainConfig


class LearnerSpec(NamedTuple):
    """What an algorithm entry gets to build its learner from.

    Attributes:
      config: the run's :class:`~jmeta.train.TrainConfig` (for settings of
        a particular algorithm).
      model: the network.
      loss_fn: ``(predictions, targets) -> scalar``.
      metrics: extra query metrics to report (``{"accuracy": ...}`` for
        classification).
      inner_lr: the inner step size (the test-time one for the test learner).
      inner_steps: inner steps during meta-training.
      transductive: ``False`` when the model normalises with the support set
        (``batch_norm="support"``), so query predictions get ``reference=``.
      num_classes: the classes of every task, for a support set whose classes
        have different numbers of examples (``jmeta predict``); ``None``: tasks
        are balanced, ``config.shots`` per class.
      input_shape: the shape of one input (``(H, W, C)``; ``None`` for regression).
      train_classes: classes of the training split (rotations included), for
        learners that pre-train a classifier over them (``None`` for regression).
    """

    config: TrainConfig
    model: Model
    loss_fn: LossFn
    metrics: Mapping[str, LossFn]
    inner_lr: float
    inner_steps: int
    transductive: bool
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None
    train_classes: int | None = None


def _gradient_based(
    builder: Callable[..., MetaLearner], *, first_order: bool | None = None, switch: bool = True
) -> Callable[[LearnerSpec], MetaLearner]:
    """An entry for a builder with MAML's arguments.

    ``first_order`` is fixed, or taken from the config when ``None``; builders
    without a first-order switch (Reptile, iMAML) take ``switch=False``.
    """

    def build(spec: LearnerSpec) -> MetaLearner:
        options = {"first_order": spec.config.first_order if first_order is None else first_order}
        return builder(
            spec.model.apply,
            spec.loss_fn,
            inner_lr=spec.inner_lr,
            num_steps=spec.inner_steps,
            transductive=spec.transductive,
            metrics=dict(spec.metrics),
            **(options if switch else {}),
        )

    return build


def _metric(builder: Callable[..., MetaLearner]) -> Callable[[LearnerSpec], MetaLearner]:
    """An entry for a metric learner on an embedding network (ProtoNets, Matching Nets, R2D2).

    The number of classes is read from the support set (``shots`` per class),
    so one learner trains and tests with different numbers of ways; or it is
    ``spec.num_classes``, when given (unbalanced support sets).
    """

    def build(spec: LearnerSpec) -> MetaLearner:
        if spec.num_classes is not None:
            return builder(spec.model.apply, num_classes=spec.num_classes,
                           metrics=dict(spec.metrics))  # fmt: skip
        return builder(spec.model.apply, shots=spec.config.shots, metrics=dict(spec.metrics))

    return build


#: CAVIA's context size, as in the paper's regression experiments.
CAVIA_CONTEXT_SIZE = 5


#: First order "for ever" (``first_order=True`` with MAML++): more epochs than any run has.
_ALWAYS = 2**31 - 1


def _mamlpp(spec: LearnerSpec) -> MetaLearner:
    return jmeta.mamlpp(
        spec.model.apply,
        spec.loss_fn,
        inner_lr=spec.inner_lr,
        num_steps=spec.inner_steps,
        first_order_epochs=_ALWAYS if spec.config.first_order else 0,
        transductive=spec.transductive,
        metrics=dict(spec.metrics),
    )


#: MAML++'s settings (Antoniou et al. 2019, the reference code's configurations): Omniglot
#: 5 inner steps of 0.1 (LSLR's initial value), 8 tasks per meta-step, 5 steps at test;
#: miniImageNet (and other image data) 5 steps of 0.01, 2 tasks.
MAMLPP_PRESETS = types.MappingProxyType({
    "omniglot": {"inner_steps": 5, "inner_lr": 0.1, "meta_batch_size": 8,
                 "test_inner_steps": (5,)},
    "images": {"inner_steps": 5, "inner_lr": 0.01, "meta_batch_size": 2,
               "test_inner_steps": (5,)},
})  # fmt: skip


def _baseline(spec: LearnerSpec) -> MetaLearner:
    if spec.input_shape is None or spec.train_classes is None:
        raise ValueError("the baseline needs image data: an input shape and training classes.")
    params = jax.eval_shape(spec.model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((1, *spec.input_shape), jnp.float32)
    feature_dim = jax.eval_shape(spec.model.apply, params, x).shape[-1]
    return jmeta.baseline(
        spec.model.apply,
        num_classes=spec.train_classes,
        feature_dim=feature_dim,
        shots=spec.config.shots,
        transductive=spec.transductive,
        metrics=dict(spec.metrics),
    )


def _cavia(spec: LearnerSpec) -> MetaLearner:
    return jmeta.cavia(
        jmeta.algorithms.concat_context(spec.model.apply),
        spec.loss_fn,
        context_size=CAVIA_CONTEXT_SIZE,
        inner_lr=spec.inner_lr,
        num_steps=spec.inner_steps,
        first_order=spec.config.first_order,
        transductive=spec.transductive,
        metrics=dict(spec.metrics),
    )


class Algorithm(NamedTuple):
    """One entry of :data:`ALGORITHMS`: how to build the learner, and on what network.

    Attributes:
      build: ``(LearnerSpec) -> MetaLearner``.
      embedding: the network has no head (it returns embeddings), for learners
        that classify by comparing embeddings; such a learner needs image data.
      extra_inputs: the MLP's input is widened by this many features (CAVIA's
        context); the trainer runs such a learner on sinusoid regression only.
      presets: data set (``"images"``: any other image data set) -> config
        field -> value: the algorithm's paper's settings, which take the place
        of the data set's presets for fields not given.
      meta_optimizer: wraps the trainer's meta-optimizer (``None``: as is),
        e.g. MAML++'s :func:`~jmeta.algorithms.mamlpp.count_meta_steps`.
      meta_lr_schedule: the default of ``TrainConfig.meta_lr_schedule``.
      pretraining: the learner trains on mini-batches of all training classes
        labelled by class index (:func:`~jmeta.algorithms.baseline.pretraining_batch`)
        instead of episodes.
    """

    build: Callable[[LearnerSpec], MetaLearner]
    embedding: bool = False
    extra_inputs: int = 0
    presets: Mapping[str, Mapping[str, Any]] = types.MappingProxyType({})
    meta_optimizer: (
        Callable[[optax.GradientTransformation], optax.GradientTransformation] | None
    ) = None
    meta_lr_schedule: str = "constant"
    pretraining: bool = False

    def __call__(self, spec: LearnerSpec) -> MetaLearner:
        """``self.build(spec)``."""
        return self.build(spec)


#: Name -> :class:`Algorithm`. ``TrainConfig(algorithm=NAME)`` and ``jmeta train --algo NAME``
#: look here; :func:`register_algorithm` adds to it.
ALGORITHMS: dict[str, Algorithm] = {
    "maml": Algorithm(_gradient_based(jmeta.maml)),
    "mamlpp": Algorithm(
        _mamlpp,
        presets=MAMLPP_PRESETS,
        meta_optimizer=jmeta.algorithms.count_meta_steps,
        meta_lr_schedule="cosine",
    ),
    "fomaml": Algorithm(_gradient_based(jmeta.maml, first_order=True)),
    "meta_sgd": Algorithm(_gradient_based(jmeta.meta_sgd)),
    "anil": Algorithm(_gradient_based(jmeta.anil)),
    "boil": Algorithm(_gradient_based(jmeta.boil)),
    "reptile": Algorithm(_gradient_based(jmeta.reptile, switch=False)),
    "imaml": Algorithm(_gradient_based(jmeta.imaml, switch=False)),
    "cavia": Algorithm(_cavia, extra_inputs=CAVIA_CONTEXT_SIZE),
    "baseline": Algorithm(
        _baseline,
        embedding=True,
        pretraining=True,
        meta_optimizer=track_feature_mean,
    ),
    "protonet": Algorithm(_metric(jmeta.protonet), embedding=True),
    "matching_net": Algorithm(_metric(jmeta.matching_net), embedding=True),
    "r2d2": Algorithm(_metric(jmeta.r2d2), embedding=True),
}


def register_algorithm(
    name: str,
    build: Callable[[LearnerSpec], MetaLearner],
    *,
    embedding: bool = False,
    extra_inputs: int = 0,
) -> Algorithm:
    """Make ``build`` available as ``TrainConfig(algorithm=name)`` and ``--algo name``.

    Args:
      name: the algorithm's name.
      build: ``(LearnerSpec) -> MetaLearner``.
      embedding: give ``build`` the network without its head (embeddings
        instead of logits).
      extra_inputs: widen the MLP's input by this many features (regression).

    Returns:
      The :class:`Algorithm` record added to :data:`ALGORITHMS`.

    Raises:
      ValueError: ``name`` is taken (pick another name rather than shadowing
        one), or ``extra_inputs`` is negative.
      TypeError: an argument has the wrong type.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string; got {name!r}.")
    if name in ALGORITHMS:
        raise ValueError(f"algorithm {name!r} is already registered.")
    if not callable(build):
        raise TypeError(f"build must be callable; got {type(build).__name__}.")
    if not isinstance(embedding, bool):
        raise TypeError(f"embedding must be True or False; got {embedding!r}.")
    if isinstance(extra_inputs, bool) or not isinstance(extra_inputs, numbers.Integral):
        raise TypeError(f"extra_inputs must be an integer; got {extra_inputs!r}.")
    if extra_inputs < 0:
        raise ValueError(f"extra_inputs must be >= 0; got {extra_inputs}.")
    record = Algorithm(build, embedding=embedding, extra_inputs=int(extra_inputs))
    ALGORITHMS[name] = record
    return record
