"""The pure building blocks: batch norm with a reference batch, max-pooling."""

import jax
import jax.numpy as jnp
import numpy as np

from jmeta.models._layers import batch_norm, max_pool_2x2, run_with_reference

IDENTITY_BN = {"scale": jnp.ones(3), "bias": jnp.zeros(3)}


def test_batch_norm_normalises_with_the_statistics_rows():
    h = jnp.asarray(np.random.default_rng(0).normal(2.0, 3.0, (6, 4, 4, 3)), jnp.float32)
    out = batch_norm(h, IDENTITY_BN, None)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=(0, 1, 2)), 1.0, atol=1e-3)
    out = batch_norm(h, IDENTITY_BN, 2)
    np.testing.assert_allclose(out[:2].mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[2:], batch_norm(h, IDENTITY_BN, 2)[2:])
    params = {"scale": jnp.array([1.0, 2.0, 3.0]), "bias": jnp.array([0.0, 1.0, -1.0])}
    np.testing.assert_allclose(
        batch_norm(h, params, 2),
        batch_norm(h, IDENTITY_BN, 2) * params["scale"] + params["bias"],
        rtol=1e-5,
        atol=1e-5,
    )


def test_run_with_reference_returns_only_the_rows_of_x():
    def body(h, num_stat_rows):
        return h - h[:num_stat_rows].mean(axis=0)

    x, reference = jnp.arange(3.0)[:, None], jnp.array([[10.0], [20.0]])
    np.testing.assert_allclose(run_with_reference(body, x, reference), x - 15.0)
    np.testing.assert_allclose(run_with_reference(body, x, None), x - 1.0)


def test_max_pool_values():
    h = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 7, 3)), jnp.float32)
    # Odd sizes are cropped.
    expected = jnp.max(h[:, :4, :6].reshape(2, 2, 2, 3, 2, 3), axis=(2, 4))
    np.testing.assert_array_equal(max_pool_2x2(h), expected)


def test_max_pool_gradient_goes_to_exactly_one_element_per_window():
    # Ties included: a selection, never a split (or a loss) of the gradient.
    h = jnp.zeros((1, 4, 4, 2)).at[0, 2, 3, 1].set(1.0)
    for fn in (jax.grad, lambda f: jax.jit(jax.grad(f))):
        grad = fn(lambda h: jnp.sum(max_pool_2x2(h)))(h)
        per_window = grad.reshape(1, 2, 2, 2, 2, 2).sum(axis=(2, 4))
        np.testing.assert_array_equal(per_window, 1.0)
        assert set(np.unique(grad)) == {0.0, 1.0}
        assert grad[0, 2, 3, 1] == 1.0
