import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jmeta.train.build import meta_optimizer
from jmeta.train.config import TrainConfig

pytestmark = pytest.mark.standard_promotion  # optax.adam


@pytest.mark.parametrize(("name", "reference"), [("adam", optax.adam), ("sgd", optax.sgd)])
def test_meta_optimizer_acts_on_raveled_parameters_with_the_same_numbers(name, reference):
    config = TrainConfig(meta_optimizer=name, meta_lr=0.05)
    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.array([1.0, -2.0]), "s": jnp.array(0.5)}
    flat, per_leaf = meta_optimizer(config), reference(0.05)
    flat_state, leaf_state = flat.init(params), per_leaf.init(params)
    # One vector per moment, not one array per parameter leaf.
    assert all(x.ndim <= 1 for x in jax.tree.leaves(flat_state))  # SGD has no state at all
    flat_params, leaf_params = params, params
    for step in range(3):
        grads = jax.tree.map(lambda p, step=step: jnp.sin(p * (step + 1.0)), flat_params)
        u, flat_state = flat.update(grads, flat_state, flat_params)
        flat_params = optax.apply_updates(flat_params, u)
        u, leaf_state = per_leaf.update(grads, leaf_state, leaf_params)
        leaf_params = optax.apply_updates(leaf_params, u)
    chex.assert_trees_all_close(flat_params, leaf_params, rtol=1e-6)
    assert not np.allclose(flat_params["w"], params["w"])  # the updates did something
