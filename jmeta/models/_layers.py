"""Pure building blocks shared by the jmeta models.

Every function here takes its weights as arguments and keeps no state, so the
models built from them can be ``vmap``-ed over tasks with per-task weights and
differentiated to any order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

from jmeta.types import Array, Params, PRNGKey

BatchNormMode = Literal["transductive", "support", "none"]
ConvImpl = Literal["xla", "im2col"]

BATCH_NORM_MODES: tuple[str, ...] = ("transductive", "support", "none")
CONV_IMPLS: tuple[str, ...] = ("xla", "im2col")
BATCH_NORM_EPSILON = 1e-5

Initializer = Callable[..., Array]


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Raises a ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")


def compute_dtype(dtype: jnp.dtype | None, param_dtype: jnp.dtype) -> jnp.dtype:
    """The dtype activations are computed in: ``dtype``, else ``param_dtype``."""
    return jnp.dtype(param_dtype if dtype is None else dtype)


def prepare_images(
    x: Array, input_shape: tuple[int, int, int], dtype: jnp.dtype, *, model: str, name: str
) -> Array:
    """Checks an ``[n, H, W, C]`` image batch and casts it to ``dtype``.

    ``uint8`` images are scaled to ``[0, 1]``; other inputs are only cast.

    Raises:
      ValueError: if ``x`` is not ``[n, *input_shape]``.
    """
    x = jnp.asarray(x)
    expected = "[n, {}, {}, {}]".format(*input_shape)
    if x.ndim != 4:
        raise ValueError(
            f"{model}: expected {name} of shape {expected} (NHWC), got an array of "
            f"rank {x.ndim} with shape {tuple(x.shape)}."
        )
    if tuple(x.shape[1:]) != tuple(input_shape):
        hint = ""
        if x.shape[-1] != input_shape[-1]:
            hint = f" It has {x.shape[-1]} channels, the model expects {input_shape[-1]}"
            hint += " (inputs are channels-last, NHWC)."
        raise ValueError(
            f"{model}: expected {name} of shape {expected} (NHWC), got {tuple(x.shape)}.{hint}"
        )
    if x.dtype == jnp.uint8:
        return x.astype(dtype) / jnp.asarray(255, dtype)
    return x.astype(dtype)


def run_with_reference(
    body: Callable[[Array, int | None], Array],
    x: Array,
    reference: Array | None,
    batch_norm: str,
) -> Array:
    """Runs ``body(h, num_stat_rows)`` under a batch-norm policy.

    ``body`` normalises with statistics from the first ``num_stat_rows`` rows of
    its batch (all rows when ``None``). In ``"support"`` mode with a reference
    batch, the reference is prepended to ``x`` so that it alone provides the
    statistics at every layer, and only the rows of ``x`` are returned.
    """
    if batch_norm == "support" and reference is not None:
        num_ref = reference.shape[0]
        out = body(jnp.concatenate([reference, x], axis=0), num_ref)
        return out[num_ref:]
    return body(x, None)


def conv2d(x: Array, kernel: Array, impl: str) -> Array:
    """Stride-1, ``SAME``-padded 2-D convolution of NHWC ``x`` by an HWIO kernel.

    Args:
      x: ``[n, H, W, C_in]``.
      kernel: ``[kh, kw, C_in, C_out]``.
      impl: ``"xla"`` uses ``lax.conv_general_dilated``. ``"im2col"`` gathers the
        ``kh * kw`` shifted copies of ``x`` into ``[n, H, W, kh * kw * C_in]``
        patches and contracts them with the flattened kernel in one ``einsum``,
        so that ``vmap`` over per-task kernels gives a batched matrix product
        rather than a grouped convolution.

    Returns:
      ``[n, H, W, C_out]``.
    """
    kh, kw, c_in, c_out = kernel.shape
    if impl == "xla":
        return lax.conv_general_dilated(
            x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    if (kh, kw) == (1, 1):
        patches = x
    else:
        height, width = x.shape[1:3]
        # The same split of the padding as XLA's "SAME": the extra row/column
        # of an even-sized kernel goes after the image.
        padded = jnp.pad(
            x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0))
        )
        # Shifts in (row, column) order with channels innermost: the order of
        # kernel.reshape(kh * kw * c_in, c_out).
        shifted = [
            padded[:, i : i + height, j : j + width, :] for i in range(kh) for j in range(kw)
        ]
        patches = jnp.concatenate(shifted, axis=-1)
    return jnp.einsum("nhwk,ko->nhwo", patches, kernel.reshape(kh * kw * c_in, c_out))


def batch_norm(h: Array, params: Params, num_stat_rows: int | None) -> Array:
    """Batch normalisation with statistics from the current batch, never stored.

    Mean and (biased) variance are taken over every axis but the last, from the
    first ``num_stat_rows`` rows of ``h`` (all rows when ``None``), in float32
    whatever the dtype of ``h``. The result is ``scale * (h - mean) /
    sqrt(var + 1e-5) + bias``, cast back to the dtype of ``h``.
    """
    h32 = h.astype(jnp.float32)
    stats = h32 if num_stat_rows is None else h32[:num_stat_rows]
    axes = tuple(range(h.ndim - 1))
    mean = jnp.mean(stats, axis=axes)
    var = jnp.mean(jnp.square(stats - mean), axis=axes)
    inv = params["scale"].astype(jnp.float32) * lax.rsqrt(var + BATCH_NORM_EPSILON)
    return ((h32 - mean) * inv + params["bias"].astype(jnp.float32)).astype(h.dtype)


def max_pool_2x2(h: Array) -> Array:
    """2x2 max-pooling with stride 2 of NHWC ``h``; an odd last row/column is dropped."""
    n, height, width, channels = h.shape
    h = h[:, : height // 2 * 2, : width // 2 * 2, :]
    return jnp.max(h.reshape(n, height // 2, 2, width // 2, 2, channels), axis=(2, 4))


def dense(h: Array, params: Params, dtype: jnp.dtype) -> Array:
    """``h @ kernel + bias`` computed in ``dtype``."""
    return h @ params["kernel"].astype(dtype) + params["bias"].astype(dtype)


def init_conv(
    key: PRNGKey,
    kernel_size: int,
    c_in: int,
    c_out: int,
    kernel_init: Initializer,
    param_dtype: jnp.dtype,
    *,
    use_bias: bool,
) -> Params:
    """``{"kernel": [k, k, c_in, c_out]}``, plus a zero ``"bias"`` if ``use_bias``."""
    params = {"kernel": kernel_init(key, (kernel_size, kernel_size, c_in, c_out), param_dtype)}
    if use_bias:
        params["bias"] = jnp.zeros((c_out,), param_dtype)
    return params


def init_batch_norm(channels: int, param_dtype: jnp.dtype) -> Params:
    """``{"scale": ones, "bias": zeros}``, both ``[channels]``."""
    return {"scale": jnp.ones((channels,), param_dtype), "bias": jnp.zeros((channels,), param_dtype)}


def init_dense(
    key: PRNGKey, d_in: int, d_out: int, kernel_init: Initializer, param_dtype: jnp.dtype
) -> Params:
    """``{"kernel": [d_in, d_out], "bias": zeros [d_out]}``."""
    return {
        "kernel": kernel_init(key, (d_in, d_out), param_dtype),
        "bias": jnp.zeros((d_out,), param_dtype),
    }


# PyTorch's default for nn.Linear weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
linear_default_init: Initializer = jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
