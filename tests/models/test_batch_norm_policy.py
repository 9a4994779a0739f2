"""The batch-norm policy: statistics from the current batch, never stored.

"transductive" normalises with the batch given to ``apply``; "support"
normalises with a reference (support) batch, so each query is predicted
independently of the other queries. Neither mode shares anything across
tasks under ``vmap`` or across calls.

All inputs are 4 support and 6 query images, so that the compiled operations
are shared between tests.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta.models import conv4, resnet12

SHAPE = (16, 16, 1)
BUILDERS = {
    "conv4": lambda bn: conv4(3, channels=4, input_shape=SHAPE, batch_norm=bn),
    "resnet12": lambda bn: resnet12(3, channels=(2, 3, 4, 4), input_shape=SHAPE, batch_norm=bn),
}
MODELS = {
    (name, bn): build(bn) for name, build in BUILDERS.items() for bn in ("transductive", "support")
}
PARAMS = {name: MODELS[name, "support"].init(jax.random.key(0)) for name in BUILDERS}


def images(seed, n):
    # numpy draws: no compilation per shape, unlike jax.random.
    return jnp.asarray(np.random.default_rng(seed).standard_normal((n, *SHAPE), np.float32))


SUPPORT, QUERY = images(1, 4), images(2, 6)


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("bn", ["transductive", "support"])
def test_tasks_are_independent_under_vmap(name, bn):
    model = MODELS[name, bn]
    other_init = model.init(jax.random.key(1))
    task_params = jax.tree.map(lambda *p: jnp.stack(p), PARAMS[name], other_init)

    @jax.jit
    def predict(support, query):
        return jax.vmap(lambda p, s, q: model.apply(p, q, reference=s))(task_params, support, query)

    support, query = jnp.stack([SUPPORT, images(3, 4)]), jnp.stack([QUERY, images(4, 6)])
    before = predict(support, query)
    after = predict(support.at[1].set(images(5, 4)), query.at[1].set(images(6, 6)))
    np.testing.assert_array_equal(before[0], after[0])
    assert not np.allclose(before[1], after[1])


@pytest.mark.parametrize("name", BUILDERS)
def test_support_mode_predicts_queries_independently(name):
    altered = QUERY.at[0].set(images(7, 1)[0])
    model, params = MODELS[name, "support"], PARAMS[name]
    before = model.apply(params, QUERY, reference=SUPPORT)
    after = model.apply(params, altered, reference=SUPPORT)
    np.testing.assert_allclose(before[1:], after[1:], rtol=1e-6, atol=1e-6)
    assert not np.allclose(before[0], after[0])
    # A query alone gets the prediction it gets among the others.
    alone = jax.jit(model.apply)(params, QUERY[3:4], reference=SUPPORT)
    np.testing.assert_allclose(alone[0], before[3], rtol=1e-5, atol=1e-5)

    # Transductive: one query changes the statistics, hence every prediction.
    model = MODELS[name, "transductive"]
    before, after = model.apply(params, QUERY), model.apply(params, altered)
    assert np.abs(before[1:] - after[1:]).max() > 1e-3


@pytest.mark.parametrize("name", BUILDERS)
def test_support_mode_without_reference_is_transductive(name):
    transductive = MODELS[name, "transductive"].apply(PARAMS[name], QUERY)
    support = MODELS[name, "support"]
    np.testing.assert_array_equal(support.apply(PARAMS[name], QUERY), transductive)
    np.testing.assert_array_equal(support.apply(PARAMS[name], QUERY, reference=QUERY), transductive)


def test_reference_is_ignored_outside_support_mode():
    model, params = MODELS["conv4", "transductive"], PARAMS["conv4"]
    np.testing.assert_array_equal(
        model.apply(params, QUERY), model.apply(params, QUERY, reference=SUPPORT)
    )


def test_support_statistics_are_differentiated():
    model, params = MODELS["conv4", "support"], PARAMS["conv4"]
    grad = jax.jit(jax.grad(lambda s: jnp.sum(model.apply(params, QUERY, reference=s) ** 2)))
    assert np.abs(grad(SUPPORT)).max() > 0


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("bn", ["transductive", "support"])
def test_apply_is_pure(name, bn):
    model, params = MODELS[name, bn], PARAMS[name]
    first = model.apply(params, QUERY, reference=SUPPORT)
    model.apply(params, 10.0 * images(8, 6), reference=10.0 * images(9, 4))  # other data
    np.testing.assert_array_equal(first, model.apply(params, QUERY, reference=SUPPORT))
    np.testing.assert_allclose(
        first, jax.jit(model.apply)(params, QUERY, reference=SUPPORT), rtol=1e-5, atol=1e-5
    )
    reinit = model.init(jax.random.key(0))
    assert jax.tree.all(jax.tree.map(jnp.array_equal, params, reinit))
