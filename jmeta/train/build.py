"""Build what a run needs from its config: learners, meta-optimizer, initial state."""

from __future__ import annotations

import jax
import numpy as np
import optax

from jmeta.step import MetaTrainState, MetaTrainStep
from jmeta.train.algorithms import ALGORITHMS, LearnerSpec
from jmeta.train.config import TrainConfig
from jmeta.train.problem import Problem
from jmeta.types import MetaLearner, Model


def build_learners(config: TrainConfig, problem: Problem) -> tuple[MetaLearner, MetaLearner]:
    """The learner for meta-training and the one for evaluation (test-time inner lr)."""
    build = ALGORITHMS[config.algorithm].build

    def spec(inner_lr: float) -> LearnerSpec:
        return LearnerSpec(
            config=config,
            model=problem.model,
            loss_fn=problem.loss_fn,
            metrics=problem.metrics,
            inner_lr=inner_lr,
            inner_steps=config.inner_steps,
            transductive=config.batch_norm != "support",
            input_shape=problem.image_shape,
            train_classes=problem.train_classes,
        )

    train_learner = build(spec(config.inner_lr))
    if config.test_inner_lr == config.inner_lr:
        return train_learner, train_learner
    return train_learner, build(spec(config.test_inner_lr))


#: The end of the cosine schedule, as a fraction of ``meta_lr`` (MAML++: 1e-5 / 1e-3).
COSINE_FLOOR = 0.01


def meta_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The outer optimizer the config names, acting on the raveled parameters.

    With ``meta_lr_schedule="cosine"`` its rate follows cosine annealing from
    ``meta_lr`` at step 0 to ``COSINE_FLOOR * meta_lr`` at ``num_steps``
    (MAML++: 1e-3 to 1e-5); an algorithm's ``meta_optimizer`` wraps it.

    Adam and SGD act on each element alone, so ``optax.flatten`` gives the same
    updates (up to float rounding); it turns one small update per parameter
    leaf into one fused update of a single vector, which on small models (the
    sinusoid MLP has six leaves) takes a measurable part of the step away.
    """
    optimizer = {"adam": optax.adam, "sgd": optax.sgd}[config.meta_optimizer]
    rate = config.meta_lr
    if config.meta_lr_schedule == "cosine":
        rate = optax.cosine_decay_schedule(config.meta_lr, config.num_steps, COSINE_FLOOR)
    flat = optax.flatten(optimizer(rate))
    wrap = ALGORITHMS[config.algorithm].meta_optimizer
    return flat if wrap is None else wrap(flat)


def run_keys(seed: int | jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(init_key, train_key)`` of a run: two independent streams of ``key(seed)``.

    ``seed`` is an integer in ``[0, 2**32)`` (traced as ``uint32``, which gives
    the same keys as ``jax.random.key`` of the Python integer).
    """
    root = jax.random.key(seed)
    return jax.random.fold_in(root, 0), jax.random.fold_in(root, 1)


def initial_state(
    step: MetaTrainStep, learner: MetaLearner, model: Model, seed: int, *, abstract: bool = False
) -> tuple[MetaTrainState, jax.Array]:
    """The state before the first meta-step, and the key that names the training tasks.

    Computed in one compiled call (many small eager operations would each
    compile). With ``abstract=True``, only shapes and dtypes (``jax.eval_shape``),
    e.g. as the target of a checkpoint restore; the key is still concrete.
    """

    def init(seed):
        init_key, train_key = run_keys(seed)
        return step.init(learner.init(model.init(init_key))), train_key

    traced = np.uint32(seed)  # seeds are uint32 (TrainConfig checks the range)
    if abstract:
        return jax.eval_shape(init, traced)[0], jax.jit(run_keys)(traced)[1]
    return jax.jit(init)(traced)


def run_state(
    step: MetaTrainStep,
    learner: MetaLearner,
    model: Model,
    config: TrainConfig,
    *,
    abstract: bool = False,
) -> tuple[MetaTrainState, jax.Array]:
    """:func:`initial_state` of ``config``'s run: of ``config.seed``, or of every ``config.seeds``.

    With ``seeds``, each leaf of the state and the key gain a leading axis of
    one entry per seed, in the order listed; entry ``k`` equals
    ``initial_state(..., seeds[k])`` (one ``vmap`` of the same computation).
    """  # fmt: skip
    if config.seeds is None:
        return initial_state(step, learner, model, config.seed, abstract=abstract)

    def init(seed):
        init_key, train_key = run_keys(seed)
        return step.init(learner.init(model.init(init_key))), train_key

    traced = np.asarray(config.seeds, np.uint32)
    if abstract:
        return jax.eval_shape(jax.vmap(init), traced)[0], jax.jit(jax.vmap(run_keys))(traced)[1]
    return jax.jit(jax.vmap(init))(traced)
