"""MLP: the sinusoid regressor of MAML and friends."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta.models import mlp


def test_sinusoid_mlp():
    model = mlp()
    params = model.init(jax.random.key(0))
    assert sorted(params) == ["head", "layer0", "layer1"]
    assert params["layer0"]["kernel"].shape == (1, 40)
    assert params["layer1"]["kernel"].shape == (40, 40)
    assert params["head"]["kernel"].shape == (40, 1)
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == 40 + 40 + 1600 + 40 + 40 + 1
    assert model.apply(params, jnp.zeros((10, 1))).shape == (10, 1)


def test_matches_manual_forward():
    model = mlp((3, 5, 2), activation=jnp.tanh)
    params = model.init(jax.random.key(1))
    x = jnp.asarray(np.random.default_rng(2).standard_normal((4, 3)), jnp.float32)
    hidden = jnp.tanh(x @ params["layer0"]["kernel"] + params["layer0"]["bias"])
    expected = hidden @ params["head"]["kernel"] + params["head"]["bias"]
    np.testing.assert_allclose(model.apply(params, x), expected, rtol=1e-6)


def test_single_layer_is_head():
    params = mlp((3, 2)).init(jax.random.key(0))
    assert list(params) == ["head"]


def test_bad_sizes_and_inputs():
    with pytest.raises(ValueError, match="input and an output"):
        mlp((3,))
    model = mlp((3, 4, 1))
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected x of shape \[n, 3\], got \(4, 2\)"):
        model.apply(params, jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"expected x of shape \[n, 3\], got \(3,\)"):
        model.apply(params, jnp.zeros((3,)))
