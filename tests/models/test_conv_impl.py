"""conv_impl="im2col" computes the same function as conv_impl="xla".

Checked on the convolution itself (values; first- and second-order
derivatives in float32 and float64) and on whole networks (logits; the
second-order MAML meta-gradient with per-task, vmapped, adapted weights).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta.models import conv4, resnet12
from jmeta.models._layers import conv2d


def cross_entropy(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


def adapted_logits(model, params, support, support_y, query):
    """Query logits after one SGD step of size 0.4 on the support loss."""
    grads = jax.grad(lambda p: cross_entropy(model.apply(p, support), support_y))(params)
    adapted = jax.tree.map(lambda p, g: p - 0.4 * g, params, grads)
    return model.apply(adapted, query, reference=support)


def meta_step(model, params, batch):
    """Per-task adapted query logits, and the second-order MAML meta-gradient."""

    def meta_loss(p):
        logits = jax.vmap(lambda *task: adapted_logits(model, p, *task))(*batch[:3])
        return jnp.mean(jax.vmap(cross_entropy)(logits, batch[3])), logits

    grads, logits = jax.grad(meta_loss, has_aux=True)(params)
    return logits, grads


def normal(seed, shape, dtype=jnp.float32):
    """Standard-normal test data from numpy (jax.random compiles per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def random_tasks(num_tasks, shape):
    """Support (3 examples) and query (6 examples) of 3-way tasks."""
    rng = np.random.default_rng(1)
    return (
        jnp.asarray(rng.standard_normal((num_tasks, 3, *shape), np.float32)),
        jnp.asarray(rng.integers(0, 3, (num_tasks, 3))),
        jnp.asarray(rng.standard_normal((num_tasks, 6, *shape), np.float32)),
        jnp.asarray(rng.integers(0, 3, (num_tasks, 6))),
    )


def assert_trees_close(actual, desired, tol):
    """Leaf-wise closeness, relative to each leaf's largest entry."""

    def check(a, d):
        np.testing.assert_allclose(a, d, rtol=0, atol=tol * max(float(jnp.max(jnp.abs(d))), 1e-3))

    jax.tree.map(check, actual, desired)


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 5])
def test_conv2d_values_match(kernel_size):
    x = normal(0, (2, 7, 6, 3))
    kernel = normal(1, (kernel_size, kernel_size, 3, 4))
    np.testing.assert_allclose(
        conv2d(x, kernel, "im2col"), conv2d(x, kernel, "xla"), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("x64", [False, True])
def test_conv2d_derivatives_match(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        x = normal(0, (2, 6, 5, 3), dtype)
        kernel = normal(1, (3, 3, 3, 3), dtype) / 3

        def f(x, kernel, impl):
            return jnp.sum(jnp.sin(conv2d(jnp.sin(conv2d(x, kernel, impl)), kernel, impl)))

        def derivatives(impl):
            grad = jax.grad(f, argnums=(0, 1))
            hvp = jax.jvp(lambda k: grad(x, k, impl), (kernel,), (jnp.ones_like(kernel),))[1]
            return grad(x, kernel, impl), hvp

        assert_trees_close(derivatives("im2col"), derivatives("xla"), 1e-12 if x64 else 1e-5)


def test_conv4_vmapped_second_order():
    # Without batch norm, which does not depend on conv_impl: a smaller graph
    # to compile.
    kwargs = dict(channels=4, input_shape=(16, 16, 1), batch_norm="none")
    xla, im2col = (
        conv4(3, conv_impl="xla", **kwargs),
        conv4(3, conv_impl="im2col", **kwargs),
    )
    params = xla.init(jax.random.key(0))
    batch = random_tasks(2, (16, 16, 1))
    # Low backend optimisation halves the compile time of these small graphs.
    step = jax.jit(
        meta_step, static_argnums=0, compiler_options={"xla_backend_optimization_level": 0}
    )
    logits_i, grads_i = step(im2col, params, batch)
    logits_x, grads_x = step(xla, params, batch)
    np.testing.assert_allclose(logits_i, logits_x, rtol=1e-5, atol=1e-5)
    assert_trees_close(grads_i, grads_x, 5e-4)


def test_resnet12_values_match():
    kwargs = dict(channels=(2, 3, 4, 4), input_shape=(16, 16, 1))
    xla, im2col = (
        resnet12(3, conv_impl="xla", **kwargs),
        resnet12(3, conv_impl="im2col", **kwargs),
    )
    params = xla.init(jax.random.key(0))
    x = normal(1, (6, 16, 16, 1))
    np.testing.assert_allclose(
        jax.jit(im2col.apply)(params, x), jax.jit(xla.apply)(params, x), rtol=1e-5, atol=1e-5
    )
