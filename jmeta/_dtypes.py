"""Dtype helpers that behave the same under standard and strict promotion."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jmeta.types import Array


def at_least_float32(dtype: Any) -> jnp.dtype:
    """Float64 for float64 input, float32 for everything else.

    The accumulation dtype for statistics, losses and sums of low-precision values.
    Written out rather than ``jnp.promote_types(dtype, jnp.float32)``, which
    raises for ``bfloat16`` when ``jax_numpy_dtype_promotion`` is ``"strict"``.
    """
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)


def as_at_least_float32(x: Array) -> Array:
    """``x`` in :func:`at_least_float32` of its dtype (bfloat16, float16 and integers upcast)."""
    return x.astype(at_least_float32(x.dtype))


def tree_at_least_float32(tree: Any) -> jnp.dtype:
    """Float64 if any leaf of ``tree`` is float64, else float32 (one dtype for mixed leaves)."""
    wide = any(x.dtype == jnp.float64 for x in jax.tree_util.tree_leaves(tree))
    return jnp.dtype(jnp.float64 if wide else jnp.float32)
