"""Meta-SGD: per-parameter step sizes, checked against a closed form."""

import jax
import jax.numpy as jnp
import numpy as np
from toy import mlp_apply, mlp_init

import jmeta


def half_mse(pred, y):
    return 0.5 * jnp.mean(jnp.sum((pred - y) ** 2, axis=-1))


def test_linear_regression_gradients_for_init_and_step_sizes(x64):
    rng = np.random.default_rng(0)
    xs, xq = rng.normal(size=(6, 3)), rng.normal(size=(5, 3))
    ys, yq = rng.normal(size=(6, 1)), rng.normal(size=(5, 1))
    theta, alpha = rng.normal(size=(3, 1)), rng.uniform(0.05, 0.3, size=(3, 1))
    task = jmeta.Task(jmeta.Batch(xs, ys), jmeta.Batch(xq, yq))
    learner = jmeta.meta_sgd(lambda t, x: x @ t, half_mse)
    meta = jmeta.algorithms.MetaSGDParams(jnp.asarray(theta), jnp.asarray(alpha))
    grads = jax.grad(lambda m: learner.meta_loss(m, jax.tree.map(jnp.asarray, task))[0])(meta)

    # phi = theta - alpha * g,  g = Xs^T (Xs theta - ys) / n
    g = xs.T @ (xs @ theta - ys) / 6
    phi = theta - alpha * g
    outer = xq.T @ (xq @ phi - yq) / 5
    d_theta = (np.eye(3) - (alpha * (xs.T @ xs / 6)).T) @ outer  # J^T outer, J = I - diag(a) A
    d_alpha = -g * outer
    np.testing.assert_allclose(grads.params, d_theta, rtol=1e-12)
    np.testing.assert_allclose(grads.learning_rates, d_alpha, rtol=1e-12)


def test_step_sizes_only_for_adapting_parameters():
    params = mlp_init(jax.random.key(0))
    learner = jmeta.meta_sgd(
        mlp_apply, jmeta.losses.mse, inner_lr=0.3, adapt_params=lambda p: "head" in p
    )
    meta = learner.init(params)
    assert meta.learning_rates["layer0"]["kernel"] is None
    np.testing.assert_array_equal(meta.learning_rates["head"]["kernel"], jnp.full((8, 1), 0.3))


def test_with_equal_step_sizes_meta_sgd_adapts_like_maml():
    params = mlp_init(jax.random.key(0))
    task = jmeta.tasks.sinusoid(jax.random.key(1))
    a = jmeta.meta_sgd(mlp_apply, jmeta.losses.mse, inner_lr=0.05, num_steps=3)
    b = jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.05, num_steps=3)
    adapted_a = a.adapt(a.init(params), task.support)
    adapted_b = b.adapt(b.init(params), task.support)
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), adapted_a, adapted_b
    )
