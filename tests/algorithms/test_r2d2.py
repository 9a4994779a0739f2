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

import jmeta
from jmeta.algorithms import r2d2, ridge_weights


@pytest.mark.parametrize("n, d", [(6, 20), (20, 6)])
def test_woodbury_form_equals_the_direct_ridge_solution(x64, n, d):
    rng = np.random.default_rng(n)
    x, y, lam = rng.normal(size=(n, d)), rng.normal(size=(n, 3)), 0.7
    direct = jnp.linalg.solve(x.T @ x + lam * jnp.eye(d), x.T @ y)
    np.testing.assert_allclose(
        ridge_weights(jnp.asarray(x), jnp.asarray(y), lam), direct, rtol=1e-10, atol=1e-12
    )


def numpy_r2d2_logits(params, task, ways, lam, scale, bias=True):
    """R2D2's logits in NumPy float64: the primal (D+1) x (D+1) ridge solve of the authors' code.

    Features and one-hot targets are divided by sqrt(n), a column of ones is
    appended for the per-class bias, and the bias row is penalised like the
    weights; queries get ``scale * (x @ W + b)``.
    """
    x = numpy_embed(params, task.support.x)
    n = x.shape[0]
    if bias:
        x = np.concatenate([x, np.ones((n, 1))], axis=1)
    x, y = x / np.sqrt(n), np.eye(ways)[np.asarray(task.support.y)] / np.sqrt(n)
    w = np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)
    q = numpy_embed(params, task.query.x)
    return scale * (q @ w[:-1] + w[-1] if bias else q @ w), w


@pytest.mark.parametrize("bias", [True, False])
def test_logits_and_loss_match_the_closed_form(x64, bias):
    params = embed_init(jax.random.key(0), dtype=jnp.float64)
    task = clusters_task(jax.random.key(1), ways=4, shots=3, queries=2)
    learner = r2d2(embed_apply, num_classes=4, lam=0.5, scale=3.0, bias=bias)
    meta_params = learner.init(params)
    adapted, logits = jax.jit(
        lambda p, t: (a := learner.adapt(p, t.support), learner.predict(a, t.query.x))
    )(meta_params, task)
    expected, weights = numpy_r2d2_logits(params, task, 4, lam=0.5, scale=3.0, bias=bias)
    assert adapted.state.shape == (17 if bias else 16, 4)
    np.testing.assert_allclose(adapted.state, weights, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(logits, expected, rtol=1e-9, atol=1e-10)
    loss, _ = jax.jit(learner.meta_loss)(meta_params, task)
    np.testing.assert_allclose(
        loss, numpy_cross_entropy(expected, np.asarray(task.query.y)), rtol=1e-9
    )


def test_the_per_class_bias_fits_class_frequencies(x64):
    # Embeddings that carry no information: the ridge weights are zero and the
    # per-class bias alone must score the more frequent class higher, b_k = n_k / (n + n lam).
    learner = r2d2(lambda p, x: 0.0 * x @ p, num_classes=2, lam=0.25)
    support = jmeta.Batch(jnp.ones((4, 3)), jnp.array([0, 0, 0, 1]))
    adapted = learner.adapt(learner.init(jnp.ones((3, 5))), support)
    np.testing.assert_allclose(adapted.state[-1], np.array([3.0, 1.0]) / (4 + 4 * 0.25))
    np.testing.assert_allclose(adapted.state[:-1], 0.0)


def test_every_learned_scalar_gets_a_gradient(x64):
    # A scalar added to every logit (the old "bias") has exactly zero gradient
    # under softmax; every meta-parameter left must matter.
    task = clusters_task(jax.random.key(2), ways=3, shots=2, queries=2)
    learner = r2d2(embed_apply, shots=2)
    grads = jax.grad(lambda p: learner.meta_loss(p, task)[0])(
        learner.init(embed_init(jax.random.key(3), dtype=jnp.float64))
    )
    assert all(abs(float(g)) > 1e-8 for g in grads.classifier.values()), grads.classifier
    offset = jax.grad(lambda b: jmeta.losses.cross_entropy(jnp.ones((2, 3)) + b, task.query.y[:2]))
    assert abs(float(offset(0.5))) < 1e-12  # zero up to rounding


def test_meta_gradient_matches_finite_differences(x64):
    # Through the solve (and its bias row) to the embedding, the ridge penalty and the scale.
    task = clusters_task(jax.random.key(2), ways=3, shots=2, queries=2)
    learner = r2d2(embed_apply, shots=2, scale=2.0)
    meta_params = learner.init(embed_init(jax.random.key(3), dtype=jnp.float64))
    assert sorted(meta_params.classifier) == ["log_lam", "log_scale"]
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
    assert sorted(learner.init(embed_init(jax.random.key(0))).classifier) == ["log_scale"]
    with pytest.raises(ValueError, match="lam must be > 0"):
        r2d2(embed_apply, num_classes=5, lam=0.0)


@pytest.mark.standard_promotion  # optax.adam
def test_learns_gaussian_clusters_with_more_ways_in_training():
    before, after, first, last = clusters_accuracy_before_and_after(r2d2(embed_apply, shots=2))
    print(f"r2d2: 5-way accuracy {before:.3f} -> {after:.3f}, loss {first:.3f} -> {last:.3f}")
    assert after > 0.8 and after > before + 0.3, (before, after)
    assert last < 0.6 * first, (first, last)
