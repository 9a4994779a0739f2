"""Reptile: the meta-gradient is theta - phi_K, checked against NumPy SGD."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from toy import meta_gradient_temp_bytes, mlp_apply, mlp_init

import jmeta
from jmeta.algorithms import reptile


def half_mse(pred, y):
    return 0.5 * jnp.mean(jnp.sum((pred - y) ** 2, axis=-1))


def linear(theta, x):
    return x @ theta


def linear_task(rng, n=6, m=5, d=3):
    xs, xq = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    ys, yq = rng.normal(size=(n, 1)), rng.normal(size=(m, 1))
    return jmeta.Task(jmeta.Batch(xs, ys), jmeta.Batch(xq, yq))


def numpy_sgd(theta, x, y, lr, steps):
    phi = theta.copy()
    for _ in range(steps):
        phi = phi - lr * x.T @ (x @ phi - y) / len(x)
    return phi


@pytest.mark.parametrize("inner_data", ["support", "support+query"])
def test_meta_gradient_is_theta_minus_adapted(x64, inner_data):
    rng = np.random.default_rng(0)
    task = linear_task(rng)
    theta = rng.normal(size=(3, 1))
    learner = reptile(linear, half_mse, inner_lr=0.3, num_steps=4, inner_data=inner_data)
    jtask = jax.tree.map(jnp.asarray, task)
    grad, metrics = jax.grad(lambda t: learner.meta_loss(t, jtask), has_aux=True)(
        jnp.asarray(theta)
    )

    if inner_data == "support":
        x, y = task.support
    else:
        x, y = (
            np.concatenate([task.support.x, task.query.x]),
            np.concatenate([task.support.y, task.query.y]),
        )
    phi = numpy_sgd(theta, x, y, 0.3, 4)
    np.testing.assert_allclose(grad, theta - phi, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(metrics["surrogate"], 0.5 * np.sum((theta - phi) ** 2), rtol=1e-12)
    query_loss = 0.5 * np.mean((task.query.x @ phi - task.query.y) ** 2)
    np.testing.assert_allclose(metrics["loss"], query_loss, rtol=1e-12)


def test_sgd_meta_step_is_the_batched_reptile_update(x64):
    rng = np.random.default_rng(1)
    tasks = [linear_task(rng) for _ in range(3)]
    theta = rng.normal(size=(3, 1))
    epsilon = 0.5
    learner = reptile(linear, half_mse, inner_lr=0.2, num_steps=3)
    step = jmeta.meta_train_step(learner, optax.sgd(epsilon))
    batch = jax.tree.map(lambda *a: jnp.asarray(np.stack(a)), *tasks)
    state, _ = jax.jit(step.update)(step.init(jnp.asarray(theta)), batch, jax.random.key(0))

    phis = [numpy_sgd(theta, t.support.x, t.support.y, 0.2, 3) for t in tasks]
    expected = theta + epsilon * np.mean([phi - theta for phi in phis], axis=0)
    np.testing.assert_allclose(state.meta_params, expected, rtol=1e-12)


def test_memory_does_not_grow_with_inner_steps():
    # The inner loop is not differentiated: the compiled meta-gradient needs the same
    # temporary memory for 3 or 20 inner steps (MAML's grows with the steps). (With 2
    # steps the loop after the first, peeled step has one iteration and XLA removes it.)
    theta = mlp_init(jax.random.key(0), sizes=(1, 64, 64, 1))
    task = jmeta.tasks.sinusoid(jax.random.key(1), num_support=50)
    temp = {
        k: meta_gradient_temp_bytes(
            reptile(mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=k), theta, task
        )
        for k in (3, 20)
    }
    assert temp[3] == temp[20], temp
    maml = {
        k: meta_gradient_temp_bytes(
            jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=k), theta, task
        )
        for k in (3, 20)
    }
    assert maml[20] > 2 * maml[3], maml


def test_adapt_and_evaluate_use_the_support_set_like_maml():
    theta = mlp_init(jax.random.key(0))
    task = jmeta.tasks.sinusoid(jax.random.key(1))
    a = reptile(mlp_apply, jmeta.losses.mse, inner_lr=0.05, num_steps=3, inner_data="support+query")
    b = jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.05, num_steps=3)
    adapt = jax.jit(lambda learner, t, s: learner.adapt(t, s), static_argnums=0)
    jax.tree.map(
        np.testing.assert_array_equal, adapt(a, theta, task.support), adapt(b, theta, task.support)
    )
    assert set(jax.eval_shape(a.evaluate, theta, task, None)) == {"loss", "loss_before"}


def test_bad_inner_data():
    with pytest.raises(ValueError, match="inner_data must be one of"):
        reptile(mlp_apply, jmeta.losses.mse, inner_lr=0.1, inner_data="query")


def test_sinusoid_query_loss_falls():
    relu = functools.partial(mlp_apply, activation=jax.nn.relu)
    learner = reptile(relu, jmeta.losses.mse, inner_lr=0.02, num_steps=5)
    step = jmeta.meta_train_step(learner, optax.sgd(1.0))
    sample = jmeta.tasks.batch_sampler(jmeta.tasks.sinusoid, 10)
    run = jmeta.scan_steps(step, sample, 100)
    state = step.init(learner.init(mlp_init(jax.random.key(0), sizes=(1, 40, 40, 1))))
    losses = []
    for i in range(3):
        state, metrics = run(state, jax.random.key(i))
        losses.append(float(metrics["loss"].mean()))
    print(f"reptile: sinusoid query loss per 100 steps {[round(v, 3) for v in losses]}")
    assert losses[-1] < 0.75 * losses[0], losses
