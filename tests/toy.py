"""Toy models, tasks and references written out for the tests (no dependency on jmeta.models)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jmeta
from jmeta.types import Batch, Task


def mlp_init(key, sizes=(1, 8, 8, 1), dtype=jnp.float32):
    """A tiny MLP with a module named ``head``, written out for the core tests."""
    params = {}
    names = [f"layer{i}" for i in range(len(sizes) - 2)] + ["head"]
    for name, layer_key, (n_in, n_out) in zip(
        names,
        jax.random.split(key, len(names)),
        zip(sizes[:-1], sizes[1:], strict=True),
        strict=True,
    ):
        params[name] = {
            "kernel": (jax.random.normal(layer_key, (n_in, n_out)) / jnp.sqrt(n_in)).astype(dtype),
            "bias": jnp.full((n_out,), 0.1, dtype),
        }
    return params


def mlp_apply(params, x, activation=jnp.tanh):
    names = sorted(k for k in params if k != "head") + ["head"]
    for name in names[:-1]:
        x = activation(x @ params[name]["kernel"] + params[name]["bias"])
    return x @ params["head"]["kernel"] + params["head"]["bias"]


CLUSTER_DIMS = (4, 12)  # signal and noise features of clusters_task
MIX = np.linalg.qr(np.random.default_rng(1234).normal(size=(16, 16)))[0]  # a fixed rotation


def clusters_task(key, data=None, *, ways=5, shots=2, queries=3):
    """A few-shot classification task of Gaussian clusters hidden among noise features.

    A task sampler ``(key, data) -> Task``; ``data`` is unused.

    Each class has a random mean in a 4-d signal subspace (tight clusters); 12
    more features are loud noise, and a fixed rotation mixes the two, so raw
    distances are dominated by noise and an embedding must learn to project it
    out. Labels are ``0..ways-1`` repeated; support has ``ways * shots``
    examples, query ``ways * queries``, 16 features each.
    """
    del data
    signal_dims, noise_dims = CLUSTER_DIMS
    k_mean, k_signal, k_noise = jax.random.split(key, 3)
    means = 2.0 * jax.random.normal(k_mean, (ways, signal_dims))
    labels = jnp.tile(jnp.arange(ways), shots + queries)
    signal = means[labels] + 0.3 * jax.random.normal(k_signal, (labels.shape[0], signal_dims))
    noise = 3.0 * jax.random.normal(k_noise, (labels.shape[0], noise_dims))
    x = jnp.concatenate([signal, noise], axis=-1) @ jnp.asarray(MIX, signal.dtype)
    n = ways * shots
    return Task(Batch(x[:n], labels[:n]), Batch(x[n:], labels[n:]))


def embed_init(key, sizes=(16, 32, 16), dtype=jnp.float32):
    """A one-hidden-layer tanh embedding network (no head), for the metric-based tests."""
    k1, k2 = jax.random.split(key)
    return {
        "layer0": {"kernel": (jax.random.normal(k1, sizes[:2]) / jnp.sqrt(sizes[0])).astype(dtype)},
        "layer1": {"kernel": (jax.random.normal(k2, sizes[1:]) / jnp.sqrt(sizes[1])).astype(dtype)},
    }


def embed_apply(params, x):
    return jnp.tanh(x @ params["layer0"]["kernel"]) @ params["layer1"]["kernel"]


def numpy_embed(params, x):
    """``embed_apply`` in NumPy float64, for the hand-written references."""
    w0, w1 = (np.asarray(params[k]["kernel"], np.float64) for k in ("layer0", "layer1"))
    return np.tanh(np.asarray(x, np.float64) @ w0) @ w1


def numpy_unit(v):
    """Rows scaled to unit Euclidean length."""
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def numpy_cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels].mean()


def clusters_accuracy_before_and_after(learner, steps=100, train_ways=10, test_ways=5, shots=2):
    """Meta-train ``learner`` on ``clusters_task`` (Adam) and score fixed ``test_ways`` tasks.

    Returns the mean query accuracy on 100 test tasks before and after training
    and the training losses of the first and last ten steps.
    """
    train = functools.partial(clusters_task, ways=train_ways, shots=shots)
    test = jax.jit(jax.vmap(functools.partial(clusters_task, ways=test_ways, shots=shots)))(
        jax.random.split(jax.random.key(99), 100)
    )
    score = jax.jit(lambda p: jax.vmap(lambda t: learner.evaluate(p, t)["accuracy"])(test).mean())
    step = jmeta.meta_train_step(learner, optax.adam(1e-2))
    sample = jmeta.tasks.batch_sampler(train, 8)
    meta_params = learner.init(embed_init(jax.random.key(0)))
    before = float(score(meta_params))
    state, metrics = jmeta.scan_steps(step, sample, steps)(
        step.init(jax.tree.map(jnp.copy, meta_params)), jax.random.key(1)
    )
    after = float(score(state.meta_params))
    losses = metrics["loss"]
    return before, after, float(losses[:10].mean()), float(losses[-10:].mean())


def meta_gradient_temp_bytes(learner, meta_params, task):
    """Temporary memory XLA allocates for the compiled meta-gradient of one task."""
    grad = jax.jit(jax.grad(lambda p: learner.meta_loss(p, task)[0]))
    return grad.lower(meta_params).compile().memory_analysis().temp_size_in_bytes
