"""The transfer baseline: CL2N nearest-centroid and linear heads against NumPy, and a tiny
pre-training run that learns."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta.algorithms.baseline import (
    BaselineParams,
    baseline,
    pretraining_batch,
    track_feature_mean,
)


def identity_embed(params, x):
    return x.reshape(x.shape[0], -1) * params["gain"]


def reference_cl2n(z, mu):
    c = z - mu
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def test_centroid_head_is_cl2n_nearest_centroid(x64):
    rng = np.random.default_rng(0)
    ways, shots, dim = 3, 2, 5
    xs, xq = rng.normal(size=(ways * shots, dim)), rng.normal(size=(7, dim))
    ys, yq = np.repeat(np.arange(ways), shots), rng.integers(0, ways, 7)
    mu = rng.normal(size=dim)
    learner = baseline(identity_embed, num_classes=4, feature_dim=dim, shots=shots)
    meta = BaselineParams({"gain": jnp.asarray(1.0)}, {}, jnp.asarray(mu))
    task = jmeta.Task(jmeta.Batch(jnp.asarray(xs), jnp.asarray(ys)),
                      jmeta.Batch(jnp.asarray(xq), jnp.asarray(yq)))  # fmt: skip
    logits = learner.predict(learner.adapt(meta, task.support), task.query.x)
    s, q = reference_cl2n(xs, mu), reference_cl2n(xq, mu)
    centroids = np.stack([s[ys == k].mean(0) for k in range(ways)])
    want = -np.array([[np.sum((qi - c) ** 2) for c in centroids] for qi in q])
    np.testing.assert_allclose(logits, want, rtol=1e-10, atol=1e-12)
    acc = learner.evaluate(meta, task)["accuracy"]
    np.testing.assert_allclose(float(acc), np.mean(want.argmax(1) == yq), rtol=1e-6)


def test_linear_head_is_softmax_regression_by_gradient_descent(x64):
    rng = np.random.default_rng(1)
    ways, shots, dim, steps, lr = 3, 2, 4, 5, 0.7
    xs, ys = rng.normal(size=(ways * shots, dim)), np.repeat(np.arange(ways), shots)
    learner = baseline(identity_embed, num_classes=4, feature_dim=dim, shots=shots,
                       head="linear", linear_steps=steps, linear_lr=lr)  # fmt: skip
    meta = BaselineParams({"gain": jnp.asarray(1.0)}, {}, jnp.zeros(dim))
    fitted = learner.adapt(meta, jmeta.Batch(jnp.asarray(xs), jnp.asarray(ys)))
    z = reference_cl2n(xs, np.zeros(dim))
    w, b = np.zeros((dim, ways)), np.zeros(ways)
    onehot = np.eye(ways)[ys]
    for _ in range(steps):  # d/dlogits of the mean cross-entropy: (softmax - onehot) / n
        logits = z @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(z)
        w, b = w - lr * z.T @ g, b - lr * g.sum(0)
    np.testing.assert_allclose(fitted.weights[0], w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fitted.weights[1], b, rtol=1e-10, atol=1e-12)


def test_pretraining_batch_labels_every_class_and_rotation():
    images = jnp.asarray(np.arange(6, dtype=np.uint8).reshape(3, 2, 1, 1, 1) * 40)
    images = jnp.tile(images, (1, 1, 2, 2, 1)).at[:, :, 0, 0].add(1)  # a marked corner
    task = pretraining_batch(jax.random.key(0), images, batch_size=64, rotations=True)
    x = np.concatenate([task.support.x, task.query.x])
    y = np.concatenate([task.support.y, task.query.y])
    assert set(y.tolist()) == set(range(12)) and x.shape == (128, 2, 2, 1)
    for xi, yi in zip(x, y, strict=True):
        base = np.asarray(images[yi // 4], np.float32) / 255.0
        assert any(np.allclose(xi, np.rot90(b, yi % 4)) for b in base)
    again = pretraining_batch(jax.random.key(0), images, batch_size=64, rotations=True)
    np.testing.assert_array_equal(again.support.x, task.support.x)


@pytest.mark.standard_promotion  # adam
def test_a_tiny_pretraining_run_learns_and_transfers():
    rng = np.random.default_rng(0)
    protos = rng.integers(0, 256, size=(30, 1, 4, 4, 1))
    noise = rng.integers(-30, 31, size=(30, 12, 4, 4, 1))
    images = jnp.asarray(np.clip(protos + noise, 0, 255), jnp.uint8)
    train, test = images[:20], images[20:]
    net = jmeta.models.mlp((16, 32, 16))

    def embed(p, x):
        return net.apply(p, x.reshape(x.shape[0], -1))

    learner = baseline(embed, num_classes=20, feature_dim=16, shots=1)
    step = jmeta.meta_train_step(learner, track_feature_mean(optax.adam(1e-2), rate=0.1))
    state = step.init(learner.init(net.init(jax.random.key(0))))

    def sample(k, data):  # one pre-training batch of 32 labelled images per meta-step
        return jmeta.tasks.sample_tasks(
            lambda kk, d: pretraining_batch(kk, d, batch_size=32), k, 1, data=data
        )

    def sampler(k, d):
        return jmeta.tasks.few_shot(k, d, ways=5, shots=1, queries=5)

    untrained = jmeta.evaluate(learner, state.meta_params, sampler, num_tasks=50, data=test)
    run = jmeta.scan_steps(step, sample, 150)
    state, metrics = run(state, jax.random.key(1), train)
    assert metrics["loss"][-10:].mean() < 0.3 * metrics["loss"][:10].mean()
    # The tracked centre is near the mean training embedding of the final network.
    true_mean = embed(state.meta_params.embedding, train.reshape(-1, 4, 4, 1) / 255.0).mean(0)
    gap = jnp.linalg.norm(state.meta_params.feature_mean - true_mean)
    assert gap < 0.1 * jnp.linalg.norm(true_mean)

    after = jmeta.evaluate(learner, state.meta_params, sampler, num_tasks=50, data=test)
    assert after["accuracy"].mean > 0.8
    assert after["accuracy"].mean >= untrained["accuracy"].mean


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="head must be one of"):
        baseline(identity_embed, num_classes=2, feature_dim=2, shots=1, head="svm")
    with pytest.raises(ValueError, match="num_classes"):
        baseline(identity_embed, num_classes=0, feature_dim=2, shots=1)
