"""Prototypical Networks against a NumPy reference, finite differences and a learning test."""

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

from jmeta.algorithms import protonet


def numpy_logits(params, support, x, ways, distance, scale):
    emb_s, emb_q = numpy_embed(params, support.x), numpy_embed(params, x)
    labels = np.asarray(support.y)
    prototypes = np.stack([emb_s[labels == k].mean(axis=0) for k in range(ways)])
    if distance == "euclidean":
        return -scale * ((emb_q[:, None, :] - prototypes[None, :, :]) ** 2).sum(-1)
    return scale * numpy_unit(emb_q) @ numpy_unit(prototypes).T


@pytest.mark.parametrize(
    "distance, scale", [("euclidean", 1.0), ("euclidean", 0.5), ("cosine", 10.0)]
)
def test_logits_and_loss_match_numpy(x64, distance, scale):
    params = embed_init(jax.random.key(0), dtype=jnp.float64)
    task = clusters_task(jax.random.key(1), ways=4, shots=3, queries=2)
    learner = protonet(embed_apply, num_classes=4, distance=distance, scale=scale)
    meta_params = learner.init(params)
    adapted = jax.jit(learner.adapt)(meta_params, task.support)
    logits = jax.jit(learner.predict)(adapted, task.query.x)
    expected = numpy_logits(params, task.support, task.query.x, 4, distance, scale)
    np.testing.assert_allclose(logits, expected, rtol=1e-10, atol=1e-10)
    labels = np.asarray(task.support.y)
    emb = numpy_embed(params, task.support.x)
    np.testing.assert_allclose(
        adapted.state, [emb[labels == k].mean(0) for k in range(4)], rtol=1e-12
    )
    loss, metrics = jax.jit(learner.meta_loss)(meta_params, task)
    np.testing.assert_allclose(
        loss, numpy_cross_entropy(expected, np.asarray(task.query.y)), rtol=1e-10
    )
    np.testing.assert_allclose(
        metrics["accuracy"], np.mean(expected.argmax(1) == np.asarray(task.query.y))
    )


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_meta_gradient_matches_finite_differences(x64, distance):
    task = clusters_task(jax.random.key(2), ways=3, shots=2, queries=2)
    learner = protonet(embed_apply, shots=2, distance=distance, learn_scale=True)
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


def test_learned_scale_is_a_meta_parameter():
    fixed = protonet(embed_apply, num_classes=5, distance="cosine")
    learned = protonet(embed_apply, num_classes=5, distance="cosine", scale=4.0, learn_scale=True)
    params = embed_init(jax.random.key(0))
    assert fixed.init(params).classifier == {}
    np.testing.assert_allclose(learned.init(params).classifier["log_scale"], np.log(4.0), rtol=1e-6)


def test_bad_distance():
    with pytest.raises(ValueError, match="distance must be one of"):
        protonet(embed_apply, num_classes=5, distance="manhattan")


@pytest.mark.standard_promotion  # optax.adam
def test_learns_gaussian_clusters_with_more_ways_in_training():
    before, after, first, last = clusters_accuracy_before_and_after(protonet(embed_apply, shots=2))
    print(f"protonet: 5-way accuracy {before:.3f} -> {after:.3f}, loss {first:.3f} -> {last:.3f}")
    assert after > 0.85 and after > before + 0.3, (before, after)
    assert last < 0.5 * first, (first, last)
