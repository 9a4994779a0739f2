"""Toy models written out for the core tests (no dependency on jmeta.models)."""

import jax
import jax.numpy as jnp


def mlp_init(key, sizes=(1, 8, 8, 1), dtype=jnp.float32):
    """A tiny MLP with a module named ``head``, written out for the core tests."""
    params = {}
    names = [f"layer{i}" for i in range(len(sizes) - 2)] + ["head"]
    for name, key, (n_in, n_out) in zip(
        names, jax.random.split(key, len(names)), zip(sizes[:-1], sizes[1:])
    ):
        params[name] = {
            "kernel": (jax.random.normal(key, (n_in, n_out)) / jnp.sqrt(n_in)).astype(dtype),
            "bias": jnp.full((n_out,), 0.1, dtype),
        }
    return params


def mlp_apply(params, x, activation=jnp.tanh):
    names = sorted(k for k in params if k != "head") + ["head"]
    for name in names[:-1]:
        x = activation(x @ params[name]["kernel"] + params[name]["bias"])
    return x @ params["head"]["kernel"] + params["head"]["bias"]
