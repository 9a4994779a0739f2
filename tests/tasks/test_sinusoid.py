import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta.tasks import sinusoid, sinusoid_params


def test_shapes_ranges_and_function():
    keys = jax.random.split(jax.random.key(0), 2000)
    tasks = jax.vmap(lambda k: sinusoid(k, num_support=10, num_query=7))(keys)
    assert tasks.support.x.shape == (2000, 10, 1) and tasks.query.y.shape == (2000, 7, 1)
    amp, phase = jax.vmap(sinusoid_params)(keys)
    assert 0.1 <= amp.min() and amp.max() <= 5.0 and 0 <= phase.min() and phase.max() <= np.pi
    assert amp.min() < 0.3 and amp.max() > 4.8 and phase.max() > 3.0  # the full ranges are used
    x = np.concatenate([tasks.support.x, tasks.query.x], axis=1)
    assert -5 <= x.min() < -4.9 and 4.9 < x.max() <= 5
    np.testing.assert_allclose(
        tasks.support.y[..., 0],
        amp[:, None] * np.sin(tasks.support.x[..., 0] - phase[:, None]),
        atol=1e-5,
    )


def test_pure_function_of_the_key_and_jittable():
    a = sinusoid(jax.random.key(3))
    b = jax.jit(sinusoid, static_argnames=("num_support", "num_query"))(
        jax.random.key(3), num_support=10, num_query=10
    )
    chex.assert_trees_all_equal(a, b)
    c = sinusoid(jax.random.key(4))
    assert not np.array_equal(a.support.x, c.support.x)


def test_support_and_query_are_independent_points():
    t = sinusoid(jax.random.key(0), num_support=5, num_query=5)
    assert not np.array_equal(t.support.x, t.query.x)


def test_sample_tasks_and_bad_counts():
    tasks = jmeta.tasks.sample_tasks(sinusoid, jax.random.key(0), 3, num_support=2)
    assert tasks.support.x.shape == (3, 2, 1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        jmeta.tasks.sample_tasks(sinusoid, jax.random.key(0), 0)
    with pytest.raises(ValueError, match="num_support must be >= 1"):
        sinusoid(jax.random.key(0), num_support=0)
    assert tasks.support.x.dtype == jnp.float32
