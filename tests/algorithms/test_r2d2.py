"""R2D2: the Woodbury ridge solve against the direct one, NumPy logits, FD, learning."""

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
)

from jmeta.algorithms import r2d2, ridge_weights


@pytest.mark.parametrize("n, d", [(6, 20), (20, 6)])
def test_woodbury_form_equals_the_direct_ridge_solution(x64, n, d):
    rng = np.random.default_rng(n)
    x, y, lam = rng.normal(size=(n, d)), rng.normal(size=(n, 3)), 0.7
    direct = jnp.linalg.solve(x.T @ x + lam * jnp.eye(d), x.T @ y)
    np.testing.assert_allclose(
        ridge_weights(jnp.asarray(x), jnp.asarray(y), lam), direct, rtol=1e-10, atol=1e-12
    )


def test_logits_and_loss_match_numpy(x64):
    params = embed_init(jax.random.key(0), dtype=jnp.float64)
    task = clusters_task(jax.random.key(1), ways=4, shots=3, queries=2)
    learner = r2d2(embed_apply, num_classes=4, lam=0.5, scale=3.0, bias=0.25)
    meta_params = learner.init(params)
    logits = jax.jit(lambda p, t: learner.predict(learner.adapt(p, t.support), t.query.x))(
        meta_params, task
    )

    x = numpy_embed(params, task.support.x)
    y = np.eye(4)[np.asarray(task.support.y)]
    w = np.linalg.solve(x.T @ x + 0.5 * np.eye(x.shape[1]), x.T @ y)  # the primal D x D form
    expected = 3.0 * numpy_embed(params, task.query.x) @ w + 0.25
    np.testing.assert_allclose(logits, expected, rtol=1e-9, atol=1e-10)
    loss, _ = jax.jit(learner.meta_loss)(meta_params, task)
    np.testing.assert_allclose(
        loss, numpy_cross_entropy(expected, np.asarray(task.query.y)), rtol=1e-9
    )


def test_meta_gradient_matches_finite_differences(x64):
    # Through the solve to the embedding, the ridge penalty, the scale and the bias.
    task = clusters_task(jax.random.key(2), ways=3, shots=2, queries=2)
    learner = r2d2(embed_apply, shots=2, scale=2.0)
    meta_params = learner.init(embed_init(jax.random.key(3), dtype=jnp.float64))
    assert sorted(meta_params.classifier) == ["bias", "log_lam", "log_scale"]
    check_grads(
        jax.jit(lambda p: learner.meta_loss(p, task)[0]),
        (meta_params,),
        order=1,
        modes=["rev"],
        atol=1e-6,
        rtol=1e-6,
        eps=1e-6,
    )


def test_fixed_lambda():
    learner = r2d2(embed_apply, num_classes=5, learn_lam=False)
    assert sorted(learner.init(embed_init(jax.random.key(0))).classifier) == ["bias", "log_scale"]
    with pytest.raises(ValueError, match="lam must be > 0"):
        r2d2(embed_apply, num_classes=5, lam=0.0)


@pytest.mark.standard_promotion  # optax.adam
def test_learns_gaussian_clusters_with_more_ways_in_training():
    before, after, first, last = clusters_accuracy_before_and_after(r2d2(embed_apply, shots=2))
    print(f"r2d2: 5-way accuracy {before:.3f} -> {after:.3f}, loss {first:.3f} -> {last:.3f}")
    assert after > 0.8 and after > before + 0.3, (before, after)
    assert last < 0.6 * first, (first, last)
