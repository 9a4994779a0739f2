"""gradient_based_learner's inner_solver hook (used by iMAML)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from toy import mlp_apply, mlp_init

import jmeta
from jmeta.algorithms.gradient_based import gradient_based_learner
from jmeta.inner import InnerLoopResult


def build(**overrides):
    kwargs = dict(
        init=lambda p: p,
        unpack=lambda t: (t, optax.sgd(0.1)),
        num_steps=2,
        first_order=False,
        remat=False,
        adapt_params=None,
        transductive=True,
        metrics=None,
    )
    return gradient_based_learner(mlp_apply, jmeta.losses.mse, **{**kwargs, **overrides})


def test_inner_solver_replaces_the_inner_loop():
    calls = []

    def halve(support_loss, params, optimizer, support, num_steps):
        calls.append(num_steps)
        loss = support_loss(params, support)
        return InnerLoopResult(
            jax.tree.map(lambda p: 0.5 * p, params), jnp.full((num_steps,), loss)
        )

    learner = build(inner_solver=halve)
    theta = mlp_init(jax.random.key(0))
    task = jmeta.tasks.sinusoid(jax.random.key(1))
    adapted = jax.jit(learner.adapt)(theta, task.support)
    jax.tree.map(lambda a, t: np.testing.assert_array_equal(a, 0.5 * t), adapted, theta)
    loss, metrics = jax.jit(learner.meta_loss)(theta, task)
    np.testing.assert_allclose(
        loss, jmeta.losses.mse(mlp_apply(adapted, task.query.x), task.query.y), rtol=1e-6
    )
    np.testing.assert_allclose(
        metrics["inner_loss_first"],
        jmeta.losses.mse(mlp_apply(theta, task.support.x), task.support.y),
        rtol=1e-6,
    )
    assert calls == [2, 2]


@pytest.mark.parametrize(
    "option", [{"first_order": True}, {"remat": True}, {"adapt_params": lambda p: True}]
)
def test_inner_solver_rejects_options_of_the_default_loop(option):
    with pytest.raises(ValueError, match="with an inner_solver leave them"):
        build(inner_solver=lambda *args: None, **option)
