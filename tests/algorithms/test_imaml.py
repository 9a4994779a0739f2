"""iMAML: the implicit meta-gradient against a dense solve and a closed-form proximal problem."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads
from toy import meta_gradient_temp_bytes, mlp_apply, mlp_init

import jmeta
from jmeta.algorithms import imaml


def half_mse(pred, y):
    return 0.5 * jnp.mean(jnp.sum((pred - y) ** 2, axis=-1))


def linear(theta, x):
    return x @ theta


def linear_task(rng, n=6, m=5, d=4):
    xs, xq = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    ys, yq = rng.normal(size=(n, 1)), rng.normal(size=(m, 1))
    return jmeta.Task(jmeta.Batch(xs, ys), jmeta.Batch(xq, yq))


def test_linear_regression_matches_the_exact_proximal_gradient(x64):
    # L_s(phi) = |Xs phi - ys|^2 / 2n has the proximal solution
    # phi*(theta) = (A + lam I)^{-1} (b + lam theta), A = Xs^T Xs / n, b = Xs^T ys / n,
    # so dL_q(phi*)/dtheta = lam (A + lam I)^{-1} grad L_q(phi*) exactly.
    rng = np.random.default_rng(0)
    task = linear_task(rng)
    theta = rng.normal(size=(4, 1))
    lam = 2.0
    learner = imaml(
        linear, half_mse, lam=lam, inner_lr=0.2, num_steps=150, cg_steps=4, cg_tol=1e-14
    )
    jtask = jax.tree.map(jnp.asarray, task)
    grad, metrics = jax.jit(jax.grad(lambda t: learner.meta_loss(t, jtask), has_aux=True))(
        jnp.asarray(theta)
    )

    (xs, ys), (xq, yq) = task
    a, b = xs.T @ xs / len(xs), xs.T @ ys / len(xs)
    phi = np.linalg.solve(a + lam * np.eye(4), b + lam * theta)
    outer = xq.T @ (xq @ phi - yq) / len(xq)
    expected = lam * np.linalg.solve(a + lam * np.eye(4), outer)
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(learner.adapt(jnp.asarray(theta), jtask.support), phi, rtol=1e-12)
    np.testing.assert_allclose(metrics["loss"], 0.5 * np.mean((xq @ phi - yq) ** 2), rtol=1e-12)


def tanh_task(key, n=6, m=5):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return jmeta.Task(
        jmeta.Batch(jax.random.normal(k1, (n, 2)), jax.random.normal(k2, (n, 1))),
        jmeta.Batch(jax.random.normal(k3, (m, 2)), jax.random.normal(k4, (m, 1))),
    )


def test_conjugate_gradient_matches_a_dense_solve(x64):
    # A tanh MLP: the Hessian is not constant, and (I + H/lam) v = grad L_q(phi) is
    # solved densely at the learner's own adapted parameters.
    theta = mlp_init(jax.random.key(0), sizes=(2, 4, 1), dtype=jnp.float64)
    task = tanh_task(jax.random.key(1))
    lam = 1.0
    flat, unravel = ravel_pytree(theta)
    learner = imaml(
        mlp_apply,
        jmeta.losses.mse,
        lam=lam,
        inner_lr=0.1,
        num_steps=5,
        cg_steps=3 * flat.size,
        cg_tol=1e-14,
    )

    @jax.jit
    def implicit_and_dense(theta):
        grad = ravel_pytree(jax.grad(lambda t: learner.meta_loss(t, task)[0])(theta))[0]
        phi = ravel_pytree(learner.adapt(theta, task.support))[0]

        def loss(flat_params, batch):
            return jmeta.losses.mse(mlp_apply(unravel(flat_params), batch.x), batch.y)

        hessian = jax.hessian(loss)(phi, task.support)
        return grad, jnp.eye(flat.size) + hessian / lam, jax.grad(loss)(phi, task.query)

    grad, system, outer = map(np.asarray, implicit_and_dense(theta))
    assert np.linalg.eigvalsh(system).min() > 0.1  # CG's assumption: positive definite
    np.testing.assert_allclose(grad, np.linalg.solve(system, outer), rtol=1e-8, atol=1e-10)


def test_converged_meta_gradient_matches_finite_differences(x64):
    # With the proximal problem solved to convergence, the implicit gradient is the true
    # derivative of L_q(phi*(theta)), which finite differences of the solver measure.
    theta = mlp_init(jax.random.key(2), sizes=(2, 4, 1), dtype=jnp.float64)
    task = tanh_task(jax.random.key(3))
    learner = imaml(
        mlp_apply, jmeta.losses.mse, lam=2.0, inner_lr=0.1, num_steps=300, cg_steps=60, cg_tol=1e-14
    )
    check_grads(
        jax.jit(lambda t: learner.meta_loss(t, task)[0]),
        (theta,),
        order=1,
        modes=["rev"],
        atol=1e-6,
        rtol=1e-6,
        eps=1e-6,
    )


def test_batched_meta_gradient_is_the_mean_of_per_task_gradients(x64):
    rng = np.random.default_rng(2)
    tasks = [jax.tree.map(jnp.asarray, linear_task(rng)) for _ in range(3)]
    theta = jnp.asarray(rng.normal(size=(4, 1)))
    learner = imaml(linear, half_mse, lam=1.0, inner_lr=0.2, num_steps=20)
    batch = jax.tree.map(lambda *a: jnp.stack(a), *tasks)
    grads, _ = jax.jit(lambda t: jmeta.meta_gradient(learner, t, batch, jax.random.key(0)))(theta)
    per_task = jax.jit(jax.grad(lambda t, task: learner.meta_loss(t, task)[0]))
    np.testing.assert_allclose(
        grads, np.mean([per_task(theta, t) for t in tasks], axis=0), rtol=1e-10
    )


def test_memory_does_not_grow_with_inner_steps():
    # The inner loop is not differentiated: the compiled meta-gradient needs the same
    # temporary memory for 3 or 20 inner steps (MAML's grows: see test_reptile). (With 2
    # steps the loop after the first, peeled step has one iteration and XLA removes it.)
    theta = mlp_init(jax.random.key(0), sizes=(1, 64, 64, 1))
    task = jmeta.tasks.sinusoid(jax.random.key(1), num_support=50)
    temp = {
        k: meta_gradient_temp_bytes(
            imaml(mlp_apply, jmeta.losses.mse, lam=1.0, inner_lr=0.1, num_steps=k), theta, task
        )
        for k in (3, 20)
    }
    assert temp[3] == temp[20], temp


def test_bad_arguments():
    with pytest.raises(ValueError, match="lam must be > 0"):
        imaml(mlp_apply, jmeta.losses.mse, lam=0.0, inner_lr=0.1)
    with pytest.raises(ValueError, match="cg_steps must be >= 1"):
        imaml(mlp_apply, jmeta.losses.mse, inner_lr=0.1, cg_steps=0)


@pytest.mark.standard_promotion  # optax.adam as the meta-optimizer
def test_sinusoid_query_loss_falls():
    # lam must exceed the most negative support-Hessian eigenvalue (about -18 here) for
    # (I + H/lam) to be positive definite; the inner step must then be < 2 / (L + lam).
    relu = functools.partial(mlp_apply, activation=jax.nn.relu)
    learner = imaml(relu, jmeta.losses.mse, lam=20.0, inner_lr=0.004, num_steps=10, cg_steps=5)
    step = jmeta.meta_train_step(learner, optax.adam(3e-3))
    sample = jmeta.tasks.batch_sampler(jmeta.tasks.sinusoid, 10)
    run = jmeta.scan_steps(step, sample, 100)
    state = step.init(learner.init(mlp_init(jax.random.key(0), sizes=(1, 40, 40, 1))))
    losses = []
    for i in range(3):
        state, metrics = run(state, jax.random.key(i))
        losses.append(float(metrics["loss"].mean()))
    print(f"imaml: sinusoid query loss per 100 steps {[round(v, 3) for v in losses]}")
    assert losses[-1] < 0.8 * losses[0], losses
