"""Mixed precision: bf16 compute, float32 parameters, gradients and losses; finite 2nd order."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from toy import mlp_apply, mlp_init

import jmeta
from jmeta.precision import cast_floating, mixed_precision


def test_model_computes_in_bf16_and_returns_float32():
    seen = {}

    def apply(params, x, reference=None):
        seen.update(params=params["head"]["kernel"].dtype, x=x.dtype, reference=reference.dtype)
        return mlp_apply(params, x)

    wrapped = mixed_precision(apply)
    params, x = mlp_init(jax.random.key(0)), jnp.ones((3, 1))
    out = wrapped(params, x, reference=x)
    assert seen == dict(params=jnp.bfloat16, x=jnp.bfloat16, reference=jnp.bfloat16)
    assert out.dtype == jnp.float32
    grads = jax.grad(lambda p: wrapped(p, x, reference=x).sum())(params)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


def test_cast_floating_leaves_integers_and_keys_alone():
    tree = {"f": jnp.ones(2), "i": jnp.arange(2), "k": jax.random.key(0), "n": np.ones(2), "s": 1.0}
    out = cast_floating(tree, jnp.bfloat16)
    assert out["f"].dtype == out["n"].dtype == jnp.bfloat16
    assert out["i"].dtype == jnp.int32 and out["k"] is tree["k"] and out["s"] == 1.0


def test_bf16_meta_gradient_is_float32_and_close_to_float32():
    tasks = jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid, jax.random.key(1), 4)
    theta = mlp_init(jax.random.key(0), sizes=(1, 40, 40, 1))

    def grad(apply):
        lr = jmeta.maml(apply, jmeta.losses.mse, inner_lr=0.01, num_steps=2)
        adapted = jax.jit(jax.vmap(lr.adapt, in_axes=(None, 0)))(theta, tasks.support)
        assert {a.dtype for a in jax.tree.leaves(adapted)} == {jnp.dtype(jnp.float32)}
        return jax.jit(lambda t: jmeta.meta_gradient(lr, t, tasks, jax.random.key(2)))(theta)

    (g32, m32), (g16, m16) = grad(mlp_apply), grad(mixed_precision(mlp_apply))
    assert {g.dtype for g in jax.tree.leaves(g16)} == {jnp.dtype(jnp.float32)}
    np.testing.assert_allclose(m16["loss"], m32["loss"], rtol=3e-2)
    flat32, flat16 = (jnp.concatenate([g.ravel() for g in jax.tree.leaves(g)]) for g in (g32, g16))
    cosine = flat32 @ flat16 / (jnp.linalg.norm(flat32) * jnp.linalg.norm(flat16))
    assert cosine > 0.99, cosine


@pytest.mark.standard_promotion  # optax.adam
def test_hundreds_of_second_order_bf16_steps_stay_finite_and_learn():
    apply = mixed_precision(lambda p, x: mlp_apply(p, x, jax.nn.relu))
    lr = jmeta.maml(apply, jmeta.losses.mse, inner_lr=0.01, num_steps=2)
    step = jmeta.meta_train_step(lr, optax.adam(3e-3))
    sample = functools.partial(jmeta.tasks.sample_tasks, jmeta.tasks.sinusoid, batch_size=10)
    state = step.init(mlp_init(jax.random.key(0), sizes=(1, 40, 40, 1)))
    state, metrics = jmeta.scan_steps(step.update, sample, 300)(state, jax.random.key(1))
    assert bool(metrics["finite"].all()) and int(state.step) == 300
    for name in ("loss", "grad_norm", "inner_loss_first", "inner_loss_last"):
        assert np.isfinite(metrics[name]).all(), name
    assert metrics["loss"][-50:].mean() < 0.8 * metrics["loss"][:50].mean()
    assert {p.dtype for p in jax.tree.leaves(state.meta_params)} == {jnp.dtype(jnp.float32)}
