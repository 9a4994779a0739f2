"""CAVIA: only a zero-initialised context adapts; meta-gradients against plain JAX and FD."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads
from toy import mlp_apply, mlp_init

import jmeta
from jmeta.algorithms import ContextParams, cavia, concat_context

CONTEXT = 3


def tanh_task(key, n=5, m=4):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return jmeta.Task(
        jmeta.Batch(jax.random.normal(k1, (n, 2)), jax.random.normal(k2, (n, 1))),
        jmeta.Batch(jax.random.normal(k3, (m, 2)), jax.random.normal(k4, (m, 1))),
    )


def reference_meta_loss(theta, task, lr, steps, first_order):
    """CAVIA written out: phi_0 = 0, SGD on the context only, query loss at (theta, phi_K)."""

    def loss(phi, batch):
        x = jnp.concatenate([batch.x, jnp.broadcast_to(phi, (batch.x.shape[0], CONTEXT))], axis=1)
        return jmeta.losses.mse(mlp_apply(theta, x), batch.y)

    phi = jnp.zeros(CONTEXT, jnp.float64)
    for _ in range(steps):
        grad = jax.grad(loss)(phi, task.support)
        phi = phi - lr * (jax.lax.stop_gradient(grad) if first_order else grad)
    return loss(phi, task.query)


def learner(**kwargs):
    return cavia(concat_context(mlp_apply), jmeta.losses.mse, context_size=CONTEXT, **kwargs)


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_matches_plain_jax(x64, first_order):
    theta = mlp_init(jax.random.key(0), sizes=(2 + CONTEXT, 6, 1), dtype=jnp.float64)
    task = tanh_task(jax.random.key(1))
    lr = learner(inner_lr=0.5, num_steps=3, first_order=first_order)
    grads = jax.jit(jax.grad(lambda t: lr.meta_loss(t, task)[0]))(theta)
    reference = functools.partial(reference_meta_loss, lr=0.5, steps=3, first_order=first_order)
    expected = jax.jit(jax.grad(reference))(theta, task)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), grads, expected
    )


def test_meta_gradient_matches_finite_differences(x64):
    theta = mlp_init(jax.random.key(2), sizes=(2 + CONTEXT, 6, 1), dtype=jnp.float64)
    task = tanh_task(jax.random.key(3))
    lr = learner(inner_lr=0.5, num_steps=2)
    check_grads(
        jax.jit(lambda t: lr.meta_loss(t, task)[0]),
        (theta,),
        order=1,
        modes=["rev"],
        atol=1e-6,
        rtol=1e-6,
        eps=1e-6,
    )


def test_only_the_context_adapts_and_it_starts_at_zero():
    theta = mlp_init(jax.random.key(0), sizes=(1 + CONTEXT, 8, 1))
    task = jmeta.tasks.sinusoid(jax.random.key(1))
    lr = learner(inner_lr=0.5, num_steps=2)
    adapt = jax.jit(lr.adapt, static_argnums=3)
    adapted = adapt(theta, task.support, None, 2)
    assert isinstance(adapted, ContextParams)
    chex.assert_trees_all_equal(adapted.params, theta)
    assert adapted.context.shape == (CONTEXT,) and np.abs(adapted.context).sum() > 0
    np.testing.assert_array_equal(adapt(theta, task.support, None, 0).context, np.zeros(CONTEXT))
    assert jax.tree.structure(lr.init(theta)) == jax.tree.structure(
        theta
    )  # the context is not meta-learned


def test_concat_context_appends_the_context_to_every_row():
    seen = []
    apply = concat_context(lambda params, x: seen.append(x) or x.sum())
    apply(None, jnp.ones((2, 3)), jnp.array([7.0, 8.0]))
    np.testing.assert_array_equal(seen[0], [[1, 1, 1, 7, 8], [1, 1, 1, 7, 8]])


def test_bad_context_size():
    with pytest.raises(ValueError, match="context_size must be >= 1"):
        cavia(mlp_apply, jmeta.losses.mse, context_size=0, inner_lr=0.1)


@pytest.mark.standard_promotion  # optax.adam
def test_sinusoid_query_loss_falls():
    relu = concat_context(functools.partial(mlp_apply, activation=jax.nn.relu))
    lr = cavia(relu, jmeta.losses.mse, context_size=4, inner_lr=1.0, num_steps=1)
    step = jmeta.meta_train_step(lr, optax.adam(3e-3))
    sample = jmeta.tasks.batch_sampler(jmeta.tasks.sinusoid, 10)
    run = jmeta.scan_steps(step, sample, 100)
    state = step.init(lr.init(mlp_init(jax.random.key(0), sizes=(5, 40, 40, 1))))
    losses = []
    for i in range(3):
        state, metrics = run(state, jax.random.key(i))
        losses.append(float(metrics["loss"].mean()))
    print(f"cavia: sinusoid query loss per 100 steps {[round(v, 3) for v in losses]}")
    assert losses[-1] < 0.75 * losses[0], losses
