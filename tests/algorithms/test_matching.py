"""Matching Networks against a NumPy reference, finite differences and a learning test."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from toy import (
    clusters_accuracy_before_and_after,
    clusters_task,
    embed_apply,
    embed_init,
    numpy_cross_entropy,
    numpy_embed,
    numpy_unit,
)

from jmeta.algorithms import matching_net


def numpy_log_probs(params, support, x, ways, scale):
    sim = scale * numpy_unit(numpy_embed(params, x)) @ numpy_unit(numpy_embed(params, support.x)).T
    attention = np.exp(sim - sim.max(axis=1, keepdims=True))
    attention /= attention.sum(axis=1, keepdims=True)  # softmax over support examples
    one_hot = np.eye(ways)[np.asarray(support.y)]
    return np.log(attention @ one_hot)


@pytest.mark.parametrize("scale", [1.0, 7.0])
def test_log_probabilities_match_numpy(x64, scale):
    params = embed_init(jax.random.key(0), dtype=jnp.float64)
    task = clusters_task(jax.random.key(1), ways=4, shots=3, queries=2)
    learner = matching_net(embed_apply, num_classes=4, scale=scale)
    meta_params = learner.init(params)
    logits = jax.jit(lambda p, t: learner.predict(learner.adapt(p, t.support), t.query.x))(
        meta_params, task
    )
    expected = numpy_log_probs(params, task.support, task.query.x, 4, scale)
    np.testing.assert_allclose(logits, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.exp(logits).sum(axis=1), 1.0, rtol=1e-12)
    loss, _ = jax.jit(learner.meta_loss)(meta_params, task)
    np.testing.assert_allclose(
        loss, numpy_cross_entropy(expected, np.asarray(task.query.y)), rtol=1e-10
    )


def test_meta_gradient_matches_finite_differences(x64):
    task = clusters_task(jax.random.key(2), ways=3, shots=2, queries=2)
    learner = matching_net(embed_apply, shots=2, scale=3.0, learn_scale=True)
    meta_params = learner.init(embed_init(jax.random.key(3), dtype=jnp.float64))
    check_grads(
        jax.jit(lambda p: learner.meta_loss(p, task)[0]),
        (meta_params,),
        order=1,
        modes=["rev"],
        atol=1e-6,
        rtol=1e-6,
        eps=1e-6,
    )


@pytest.mark.standard_promotion  # optax.adam
def test_learns_gaussian_clusters_with_more_ways_in_training():
    learner = matching_net(embed_apply, shots=2, scale=10.0, learn_scale=True)
    before, after, first, last = clusters_accuracy_before_and_after(learner)
    print(
        f"matching_net: 5-way accuracy {before:.3f} -> {after:.3f}, loss {first:.3f} -> {last:.3f}"
    )
    assert after > 0.85 and after > before + 0.3, (before, after)
    assert last < 0.5 * first, (first, last)
