"""Adaptive and momentum inner optimizers, differentiated through to second order.

Any optax transform can be the inner optimizer (``maml(inner_optimizer=...)``);
its state starts fresh for every task and the meta-gradient flows through its
update. Adam needs care: its update divides by :math:`\\sqrt{\\hat v} + \\epsilon`
and :math:`d\\sqrt{v}/dv = 1/(2\\sqrt{v})` is infinite at :math:`v = 0`. A
parameter whose support gradient is exactly zero (a feature that is zero on the
support set, a dead ReLU) has :math:`v = 0`, and the backward pass multiplies
that infinity by a zero: NaN. ``eps_root`` moves the root to
:math:`\\sqrt{\\hat v + \\epsilon_{root}}`, which is smooth at zero.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import jmeta


def half_mse(pred, y):
    return 0.5 * jnp.mean(jnp.sum((pred - y) ** 2, axis=-1))


def linear(theta, x):
    return x @ theta


def task_with_a_dead_feature():
    """Feature 0 is zero on the support set (zero inner gradient) but not on the query set."""
    rng = np.random.default_rng(0)
    xs, xq = rng.normal(size=(6, 3)), rng.normal(size=(5, 3))
    xs[:, 0] = 0.0
    task = jmeta.Task(
        jmeta.Batch(xs, rng.normal(size=(6, 1))), jmeta.Batch(xq, rng.normal(size=(5, 1)))
    )
    return jax.tree.map(jnp.asarray, task), jnp.asarray(rng.normal(size=(3, 1)))


INNER_OPTIMIZERS = {
    "adam_eps_root": lambda: optax.adam(0.1, eps_root=1e-8),
    "rmsprop": lambda: optax.rmsprop(0.05, eps=1e-8),  # eps inside the square root
    "nesterov": lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
}


@pytest.mark.standard_promotion  # optax's adaptive optimizers mix floats and int32 counts
@pytest.mark.parametrize("name", sorted(INNER_OPTIMIZERS))
def test_second_order_meta_gradient_matches_finite_differences(x64, name):
    task, theta = task_with_a_dead_feature()
    learner = jmeta.maml(linear, half_mse, inner_optimizer=INNER_OPTIMIZERS[name](), num_steps=3)
    meta_loss = jax.jit(lambda t: learner.meta_loss(t, task)[0])
    assert np.isfinite(jax.grad(meta_loss)(theta)).all()
    check_grads(meta_loss, (theta,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-6)


@pytest.mark.standard_promotion
def test_adam_without_eps_root_gives_nan_at_a_zero_gradient(x64):
    task, theta = task_with_a_dead_feature()
    learner = jmeta.maml(linear, half_mse, inner_optimizer=optax.adam(0.1), num_steps=3)
    loss, grads = jax.jit(jax.value_and_grad(lambda t: learner.meta_loss(t, task)[0]))(theta)
    assert np.isfinite(loss)  # the forward pass is fine ...
    assert np.isnan(grads[0, 0])  # ... the derivative of sqrt(v) at v = 0 is not
    first_order = jmeta.fomaml(linear, half_mse, inner_optimizer=optax.adam(0.1), num_steps=3)
    assert np.isfinite(jax.jit(jax.grad(lambda t: first_order.meta_loss(t, task)[0]))(theta)).all()
