"""MAML / FOMAML meta-gradients against closed forms and finite differences."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads
from toy import mlp_apply, mlp_init

import jmeta


def half_mse(pred, y):
    return 0.5 * jnp.mean(jnp.sum((pred - y) ** 2, axis=-1))


def linear_task(rng, n=6, m=5, d=3):
    xs, xq = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    ys, yq = rng.normal(size=(n, 1)), rng.normal(size=(m, 1))
    return jmeta.Task(jmeta.Batch(xs, ys), jmeta.Batch(xq, yq))


def closed_form_grad(theta, task, lr, steps, first_order):
    """NumPy reference: K steps of SGD on 1/(2n)|Xs t - ys|^2, then the query loss."""
    xs, ys = task.support
    xq, yq = task.query
    n, m, d = len(xs), len(xq), len(theta)
    a_mat = xs.T @ xs / n
    phi = theta.copy()
    for _ in range(steps):
        phi = phi - lr * xs.T @ (xs @ phi - ys) / n
    outer = xq.T @ (xq @ phi - yq) / m
    if first_order:
        return outer
    return np.linalg.matrix_power(np.eye(d) - lr * a_mat, steps) @ outer


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("first_order", [False, True])
def test_linear_regression_closed_form(x64, steps, first_order):
    rng = np.random.default_rng(steps)
    task = linear_task(rng)
    theta = rng.normal(size=(3, 1))
    learner = jmeta.maml(
        lambda t, x: x @ t, half_mse, inner_lr=0.3, num_steps=steps, first_order=first_order
    )
    grad = jax.grad(lambda t: learner.meta_loss(t, jax.tree.map(jnp.asarray, task))[0])(
        jnp.asarray(theta)
    )
    expected = closed_form_grad(theta, task, 0.3, steps, first_order)
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-12)


def test_first_order_differs_from_second_order(x64):
    rng = np.random.default_rng(0)
    task = jax.tree.map(jnp.asarray, linear_task(rng))
    theta = jnp.asarray(rng.normal(size=(3, 1)))
    grads = [
        jax.grad(
            lambda t, fo=fo: jmeta.maml(
                lambda p, x: x @ p, half_mse, inner_lr=0.3, first_order=fo
            ).meta_loss(t, task)[0]
        )(theta)
        for fo in (False, True)
    ]
    assert np.abs(grads[0] - grads[1]).max() > 1e-3


def tanh_task(key, n=5, m=4):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return jmeta.Task(
        jmeta.Batch(jax.random.normal(k1, (n, 2)), jax.random.normal(k2, (n, 1))),
        jmeta.Batch(jax.random.normal(k3, (m, 2)), jax.random.normal(k4, (m, 1))),
    )


LEARNERS = {
    "maml": lambda: jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=3),
    "maml_remat": lambda: jmeta.maml(
        mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=3, remat=True
    ),
    "maml_adam": lambda: jmeta.maml(
        mlp_apply,
        jmeta.losses.mse,
        inner_optimizer=optax.adam(0.05, eps_root=1e-8),
        num_steps=3,
    ),
    "meta_sgd": lambda: jmeta.meta_sgd(mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=3),
    "anil": lambda: jmeta.anil(mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=3),
    "boil": lambda: jmeta.boil(mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=3),
}


@pytest.mark.standard_promotion  # maml_adam uses optax.adam
@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_meta_gradient_matches_finite_differences(x64, name):
    learner = LEARNERS[name]()
    key = jax.random.key(0)
    meta_params = learner.init(mlp_init(key, sizes=(2, 6, 6, 1), dtype=jnp.float64))
    task = tanh_task(jax.random.key(1))
    check_grads(
        jax.jit(lambda p: learner.meta_loss(p, task, None)[0]),
        (meta_params,),
        order=1,
        modes=["rev"],
        atol=1e-6,
        rtol=1e-6,
        eps=1e-6,
    )


def test_remat_gives_the_same_gradient():
    task = tanh_task(jax.random.key(3))
    theta = mlp_init(jax.random.key(2), sizes=(2, 6, 6, 1))
    grads = [
        jax.jit(
            jax.grad(
                lambda t, r=r: jmeta.maml(
                    mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=4, remat=r
                ).meta_loss(t, task)[0]
            )
        )(theta)
        for r in (False, True)
    ]
    chex.assert_trees_all_close(*grads, rtol=1e-5, atol=1e-6)


def test_fomaml_is_first_order_maml():
    task = tanh_task(jax.random.key(3))
    theta = mlp_init(jax.random.key(2), sizes=(2, 6, 6, 1))
    a = jmeta.fomaml(mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=2)
    b = jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=2, first_order=True)
    ga, gb = (jax.grad(lambda t, lr=lr: lr.meta_loss(t, task)[0])(theta) for lr in (a, b))
    chex.assert_trees_all_equal(ga, gb)
    with pytest.raises(TypeError, match="always first-order"):
        jmeta.fomaml(mlp_apply, jmeta.losses.mse, inner_lr=0.1, first_order=False)


def test_evaluate_reports_before_and_after_with_test_time_steps():
    learner = jmeta.maml(
        mlp_apply, jmeta.losses.mse, inner_lr=0.05, num_steps=1, metrics={"mae": _mae}
    )
    theta = mlp_init(jax.random.key(0), sizes=(2, 6, 6, 1))
    task = tanh_task(jax.random.key(1))
    one = learner.evaluate(theta, task, None)
    many = learner.evaluate(theta, task, None, num_steps=20)
    assert set(one) == {"loss", "loss_before", "mae", "mae_before"}
    np.testing.assert_allclose(
        one["loss_before"], jmeta.losses.mse(mlp_apply(theta, task.query.x), task.query.y)
    )
    np.testing.assert_allclose(one["loss"], learner.meta_loss(theta, task)[0], rtol=1e-6)
    assert one["loss_before"] == many["loss_before"]
    assert many["loss"] != one["loss"]


def _mae(pred, y):
    return jnp.abs(pred - y).mean()


def test_bad_inner_configuration():
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=0)
    with pytest.raises(TypeError, match="num_steps must be an integer"):
        jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=1.5)
    with pytest.raises(ValueError, match="exactly one of inner_lr"):
        jmeta.maml(mlp_apply, jmeta.losses.mse)
    with pytest.raises(ValueError, match="exactly one of inner_lr"):
        jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.1, inner_optimizer=optax.sgd(0.1))
    learner = jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.1)
    theta = mlp_init(jax.random.key(0), sizes=(2, 6, 6, 1))
    with pytest.raises(ValueError, match="num_steps must be >= 0"):
        learner.adapt(theta, tanh_task(jax.random.key(1)).support, None, num_steps=-1)
