"""The inner loop: steps, masks, first order, remat, arbitrary optax transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jmeta.inner import inner_loop
from jmeta.params import path_mask


def quadratic(target):
    return lambda w: jnp.sum((w - target) ** 2)


def test_sgd_steps_match_hand_computation():
    out = inner_loop(quadratic(3.0), jnp.zeros(2), optax.sgd(0.25), 2)
    # w1 = 0 - 0.25 * 2 * (0 - 3) = 1.5; w2 = 1.5 - 0.25 * 2 * (1.5 - 3) = 2.25
    np.testing.assert_allclose(out.params, [2.25, 2.25])
    np.testing.assert_allclose(out.losses, [18.0, 4.5])


def test_zero_steps_is_identity():
    params = {"a": jnp.arange(3.0)}
    out = inner_loop(lambda p: quadratic(1.0)(p["a"]), params, optax.sgd(0.1), 0)
    np.testing.assert_array_equal(out.params["a"], params["a"])
    assert out.losses.shape == (0,)


def test_mask_freezes_unselected_parameters_and_skips_their_gradients():
    params = {"body": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}}
    mask = path_mask(params, lambda p: "head" in p)
    seen = []

    def loss(p):
        seen.append(jax.tree.structure(p))
        return jnp.sum(p["body"]["w"] * p["head"]["w"])

    out = inner_loop(loss, params, optax.sgd(0.5), 1, mask=mask)
    np.testing.assert_array_equal(out.params["body"]["w"], [1.0, 1.0])
    np.testing.assert_array_equal(out.params["head"]["w"], [0.5, 0.5])


def test_first_order_stops_only_the_inner_gradient():
    # phi = theta - a * g(theta) with g = 2 theta (loss theta^2): d phi / d theta is
    # 1 - 2a in second order and exactly 1 in first order.
    def adapted(theta, first_order):
        return inner_loop(
            lambda w: jnp.sum(w**2), theta, optax.sgd(0.1), 1, first_order=first_order
        ).params.sum()

    theta = jnp.array([1.5])
    assert jax.grad(adapted)(theta, False)[0] == pytest.approx(0.8)
    assert jax.grad(adapted)(theta, True)[0] == pytest.approx(1.0)


def test_compile_graph_does_not_grow_with_steps():
    def hlo_size(k):
        f = lambda w: inner_loop(quadratic(2.0), w, optax.sgd(0.1), k).params.sum()  # noqa: E731
        return len(jax.jit(jax.grad(f)).lower(jnp.ones(3)).as_text().splitlines())

    assert hlo_size(50) == hlo_size(2)


def test_remat_inserts_a_checkpoint():
    f = lambda w, r: inner_loop(quadratic(2.0), w, optax.sgd(0.1), 3, remat=r).params.sum()  # noqa: E731
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda w: f(w, True)))(jnp.ones(3)))
    assert "checkpoint" in jaxpr or "remat" in jaxpr
    np.testing.assert_allclose(
        jax.grad(lambda w: f(w, True))(jnp.ones(3)), jax.grad(lambda w: f(w, False))(jnp.ones(3))
    )


@pytest.mark.standard_promotion  # optax.adam mixes Python floats and int32 counts
def test_any_optax_transform_and_fresh_state_per_call():
    opt = optax.adam(0.1)
    a = inner_loop(quadratic(3.0), jnp.zeros(2), opt, 3).params
    b = inner_loop(quadratic(3.0), jnp.zeros(2), opt, 3).params
    np.testing.assert_array_equal(a, b)
    # Adam's first step moves every coordinate by the learning rate.
    np.testing.assert_allclose(
        inner_loop(quadratic(3.0), jnp.zeros(2), opt, 1).params, [0.1, 0.1], rtol=1e-5
    )


def test_bad_step_count():
    with pytest.raises(ValueError, match="num_steps must be >= 0"):
        inner_loop(quadratic(1.0), jnp.zeros(1), optax.sgd(0.1), -1)
    with pytest.raises(TypeError, match="num_steps must be an integer"):
        inner_loop(quadratic(1.0), jnp.zeros(1), optax.sgd(0.1), 2.0)
