"""Adapters: linen, NNX and Equinox modules as jmeta Models."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jmeta.models import Model, from_equinox, from_linen, from_nnx

X = jnp.asarray(np.random.default_rng(1).standard_normal((5, 3), np.float32))


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x, scale=1.0):
        x = nn.relu(nn.Dense(8, name="hidden")(x))
        return scale * nn.Dense(2, name="head")(x)


class LinenWithBatchNorm(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.BatchNorm(use_running_average=False)(nn.Dense(2)(x))


class NNXMLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(3, 8, rngs=rngs)
        self.head = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x, scale=1.0):
        return scale * self.head(nnx.relu(self.hidden(x)))


def assert_per_task_vmap_and_grad(model, params):
    """The adapted Model works with per-task weights under vmap and grad."""
    task_params = jax.tree.map(lambda p: jnp.stack([p, 2 * p]), params)
    outputs = jax.vmap(model.apply, in_axes=(0, None))(task_params, X)
    np.testing.assert_allclose(outputs[0], model.apply(params, X), rtol=1e-5, atol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, X) ** 2))(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)


def test_from_linen_matches_module():
    module = LinenMLP()
    model = from_linen(module, jnp.zeros((1, 3)), scale=2.0)
    assert isinstance(model, Model)
    params = model.init(jax.random.key(0))
    reference = module.init(jax.random.key(0), jnp.zeros((1, 3)))["params"]
    assert jax.tree.all(jax.tree.map(jnp.array_equal, params, reference))
    assert sorted(params) == ["head", "hidden"]
    np.testing.assert_array_equal(
        model.apply(params, X), module.apply({"params": params}, X, scale=2.0)
    )
    assert_per_task_vmap_and_grad(model, params)


def test_from_linen_accepts_shape_dtype_struct():
    model = from_linen(LinenMLP(), jax.ShapeDtypeStruct((1, 3), jnp.float32))
    assert model.apply(model.init(jax.random.key(0)), X).shape == (5, 2)


def test_from_linen_rejects_batch_stats():
    with pytest.raises(ValueError, match=r"\['batch_stats'\].*running averages"):
        from_linen(LinenWithBatchNorm(), jnp.zeros((1, 3)))


def test_from_nnx_factory_matches_module():
    model = from_nnx(lambda rngs: NNXMLP(rngs), scale=2.0)
    params = model.init(jax.random.key(0))
    assert sorted(params) == ["head", "hidden"]
    assert sorted(params["head"]) == ["bias", "kernel"]
    assert isinstance(params["head"]["kernel"], jax.Array)  # a plain dict of arrays
    module = NNXMLP(nnx.Rngs(jax.random.key(0)))
    np.testing.assert_array_equal(model.apply(params, X), module(X, scale=2.0))
    different = model.init(jax.random.key(1))
    assert not np.allclose(different["head"]["kernel"], params["head"]["kernel"])
    assert_per_task_vmap_and_grad(model, params)


def test_from_nnx_module_instance_keeps_its_weights():
    module = NNXMLP(nnx.Rngs(3))
    model = from_nnx(module)
    params = model.init(jax.random.key(0))
    np.testing.assert_array_equal(params["hidden"]["kernel"], module.hidden.kernel[...])
    np.testing.assert_array_equal(model.apply(params, X), module(X))
    jitted = jax.jit(model.apply)(params, X)
    np.testing.assert_allclose(jitted, module(X), rtol=1e-6)


@pytest.mark.parametrize(
    "factory, kind",
    [
        (lambda rngs: nnx.BatchNorm(3, rngs=rngs), "BatchNorm"),
        (lambda rngs: nnx.Dropout(0.5, rngs=rngs), "Dropout"),
    ],
)
def test_from_nnx_rejects_non_parameter_state(factory, kind):
    with pytest.raises(ValueError, match=f"{kind} holds non-parameter variables"):
        from_nnx(factory)


def test_from_equinox_factory_matches_module():
    eqx = pytest.importorskip("equinox")

    def factory(key):
        return eqx.nn.MLP(3, 2, 8, 1, key=key)

    model = from_equinox(factory)
    params = model.init(jax.random.key(0))
    module = factory(jax.random.key(0))
    np.testing.assert_array_equal(model.apply(params, X), jax.vmap(module)(X))
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    assert ".layers[1].weight" in paths
    assert_per_task_vmap_and_grad(model, params)


def test_from_equinox_module_and_batched():
    eqx = pytest.importorskip("equinox")
    module = eqx.nn.Linear(3, 2, key=jax.random.key(2))
    model = from_equinox(module)
    np.testing.assert_array_equal(model.apply(model.init(None), X), jax.vmap(module)(X))

    class BatchLinear(eqx.Module):
        weight: jax.Array

        def __call__(self, x, scale=1.0):
            return scale * x @ self.weight

    batched = from_equinox(BatchLinear(jnp.ones((3, 2))), batched=True, scale=3.0)
    np.testing.assert_allclose(batched.apply(batched.init(None), X), 3.0 * X @ jnp.ones((3, 2)))


def test_from_equinox_rejects_state():
    eqx = pytest.importorskip("equinox")
    with pytest.raises(ValueError, match="StateIndex"):
        from_equinox(lambda key: eqx.nn.BatchNorm(3, axis_name="batch", mode="batch"))
