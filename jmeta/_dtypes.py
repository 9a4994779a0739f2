"""Dtype helpers that behave the same under standard and strict promotion."""

from __future__ import annotations

import jax.numpy as jnp


def at_least_float32(dtype: jnp.dtype) -> jnp.dtype:
    """Float64 for float64 input, float32 for everything else.

    The accumulation dtype for statistics and sums of low-precision values.
    Written out rather than ``jnp.promote_types(dtype, jnp.float32)``, which
    raises for ``bfloat16`` when ``jax_numpy_dtype_promotion`` is ``"strict"``.
    """
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)
