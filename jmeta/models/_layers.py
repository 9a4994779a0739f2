"""Pure building blocks shared by the jmeta models.

Every function here takes its weights as arguments and keeps no state, so the
models built from them can be ``vmap``-ed over tasks with per-task weights and
differentiated to any order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jmeta._dtypes import at_least_float32
from jmeta.models._conv import conv2d_adaptive
from jmeta.types import Array, Params, PRNGKey
from jmeta.validation import is_integer

BatchNormMode = Literal["transductive", "support", "none"]
ConvImpl = Literal["auto", "adaptive", "xla", "im2col"]

BATCH_NORM_MODES: tuple[str, ...] = ("transductive", "support", "none")
CONV_IMPLS: tuple[str, ...] = ("auto", "adaptive", "xla", "im2col")
#: The ``conv_impl`` of :func:`~jmeta.models.conv4` and :func:`~jmeta.models.resnet12` when
#: none is given (also the trainer's ``conv_impl="auto"``), and what it means in words for
#: help texts (:func:`auto_conv_impl` decides). Change them together.
DEFAULT_CONV_IMPL: ConvImpl = "auto"
DEFAULT_CONV_IMPL_REASON = (
    "the fastest measured in most cases on the backend: adaptive on CPU (lax.conv where the "
    "tasks share a kernel, one lax.conv per task in a loop where each has its own), im2col "
    "elsewhere"
)
BATCH_NORM_EPSILON = 1e-5


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Raises a ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")


def params_dtype(params: Params) -> jnp.dtype:
    """The dtype of the parameters given to ``apply`` (of their first leaf).

    It is also the dtype ``apply`` returns its outputs in.
    """
    return jnp.dtype(jax.tree.leaves(params)[0].dtype)


def compute_dtype(dtype: jnp.dtype | None, params: Params) -> jnp.dtype:
    """The dtype activations are computed in: ``dtype``, else that of the parameters given.

    Read when ``apply`` is traced, so a model built without ``dtype`` computes
    in bfloat16 when it is given bfloat16 parameters
    (:func:`jmeta.precision.mixed_precision` casts them).
    """
    return jnp.dtype(dtype) if dtype is not None else params_dtype(params)


def prepare_images(
    x: Array,
    input_shape: tuple[int, int, int],
    dtype: jnp.dtype,
    *,
    model: str,
    name: str,
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


def prepare_inputs(
    x: Array,
    reference: Array | None,
    input_shape: tuple[int, int, int],
    dtype: jnp.dtype,
    batch_norm: str,
    *,
    model: str,
) -> tuple[Array, Array | None]:
    """Checks and casts ``x`` and, in ``"support"`` mode, ``reference``.

    Returns ``(x, reference)``, ``reference`` being ``None`` outside
    ``"support"`` mode or when it is ``x`` itself (which needs no second pass).
    """
    if batch_norm != "support" or reference is x:
        reference = None
    x = prepare_images(x, input_shape, dtype, model=model, name="x")
    if reference is not None:
        reference = prepare_images(reference, input_shape, dtype, model=model, name="reference")
    return x, reference


def run_with_reference(
    body: Callable[[Array, int | None], Array], x: Array, reference: Array | None
) -> Array:
    """Runs ``body(h, num_stat_rows)`` with batch-norm statistics from ``reference``.

    ``body`` normalises with statistics from the first ``num_stat_rows`` rows of
    its batch (all rows when ``None``). Given a reference batch, it is
    prepended to ``x`` so that it alone provides the statistics at every
    layer, and only the rows of ``x`` are returned; otherwise ``x`` provides
    its own statistics.
    """
    if reference is None:
        return body(x, None)
    num_ref = reference.shape[0]
    return body(jnp.concatenate([reference, x], axis=0), num_ref)[num_ref:]


def conv2d(x: Array, kernel: Array, impl: str) -> Array:
    """Stride-1, ``SAME``-padded 2-D convolution of NHWC ``x`` by an HWIO kernel.

    Args:
      x: ``[n, H, W, C_in]``.
      kernel: ``[kh, kw, C_in, C_out]``.
      impl: ``"xla"`` uses ``lax.conv_general_dilated``. ``"im2col"`` gathers the
        ``kh * kw`` shifted copies of ``x`` into ``[n, H, W, kh * kw * C_in]``
        patches and contracts them with the flattened kernel in one ``einsum``,
        so that ``vmap`` over per-task kernels gives a batched matrix product
        rather than a grouped convolution. ``"adaptive"`` is
        :func:`jmeta.models._conv.conv2d_adaptive`, whose form depends on how
        ``vmap`` batches the kernel and on the backend. ``"auto"`` is
        :func:`auto_conv_impl` of the default backend.

    Returns:
      ``[n, H, W, C_out]``.
    """
    if impl == "auto":
        impl = auto_conv_impl()
    if impl == "adaptive":
        return conv2d_adaptive(x, kernel)
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
        padded = jnp.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
        # Shifts in (row, column) order with channels innermost: the order of
        # kernel.reshape(kh * kw * c_in, c_out).
        shifted = [
            padded[:, i : i + height, j : j + width, :] for i in range(kh) for j in range(kw)
        ]
        patches = jnp.concatenate(shifted, axis=-1)
    return jnp.einsum("nhwk,ko->nhwo", patches, kernel.reshape(kh * kw * c_in, c_out))


def auto_conv_impl(backend: str | None = None) -> str:
    """What ``conv_impl="auto"`` means on ``backend`` (default: JAX's default backend,
    read when ``apply`` is traced): ``"adaptive"`` on CPU, ``"im2col"`` elsewhere,
    the fastest measured there (see :mod:`jmeta.models`)."""
    return "adaptive" if (backend or jax.default_backend()) == "cpu" else "im2col"


def batch_norm(h: Array, params: Params, num_stat_rows: int | None) -> Array:
    """Batch normalisation with statistics from the current batch, never stored.

    Mean and (biased) variance are taken over every axis but the last, from the
    first ``num_stat_rows`` rows of ``h`` (all rows when ``None``), in float32
    at least (in float64 for float64 ``h``). The result is ``scale * (h - mean)
    / sqrt(var + 1e-5) + bias``, cast back to the dtype of ``h``.
    """
    stat_dtype = at_least_float32(h.dtype)
    h_wide = h.astype(stat_dtype)
    stats = h_wide if num_stat_rows is None else h_wide[:num_stat_rows]
    axes = tuple(range(h.ndim - 1))
    mean = jnp.mean(stats, axis=axes)
    var = jnp.mean(jnp.square(stats - mean), axis=axes)
    inv = params["scale"].astype(stat_dtype) * lax.rsqrt(var + BATCH_NORM_EPSILON)
    return ((h_wide - mean) * inv + params["bias"].astype(stat_dtype)).astype(h.dtype)


def max_pool_2x2(h: Array) -> Array:
    """2x2 max-pooling with stride 2 of NHWC ``h``; an odd last row/column is dropped.

    The maximum is a tournament of ``where(a >= b, a, b)`` selections, so the
    derivative of each window flows to exactly one of its elements. (The
    derivative of ``jnp.max`` instead tests the inputs for equality with the
    result; under ``jit`` XLA may recompute the inputs in several fusions with
    different rounding, and the test can then fail for every element of a
    window, silently zeroing its gradient; this was seen in second-order
    gradients on CPU.)
    """
    n, height, width, channels = h.shape
    h = h[:, : height // 2 * 2, : width // 2 * 2, :]
    windows = h.reshape(n, height // 2, 2, width // 2, 2, channels)
    top = _select_max(windows[:, :, 0, :, 0], windows[:, :, 0, :, 1])
    bottom = _select_max(windows[:, :, 1, :, 0], windows[:, :, 1, :, 1])
    return _select_max(top, bottom)


def _select_max(a: Array, b: Array) -> Array:
    return jnp.where(a >= b, a, b)


def dense(h: Array, params: Params, dtype: jnp.dtype) -> Array:
    """``h @ kernel + bias`` computed in ``dtype``."""
    return h @ params["kernel"].astype(dtype) + params["bias"].astype(dtype)


class Draw(NamedTuple):
    """A weight to sample at ``init``: ``scale`` times i.i.d. noise of ``shape``.

    The noise is ``U(-1, 1)`` for ``distribution="uniform"`` and ``N(0, 1)``
    for ``"normal"``.
    """

    shape: tuple[int, ...]
    distribution: Literal["uniform", "normal"]
    scale: float


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Fan-in and fan-out of a ``[..., d_in, d_out]`` dense or HWIO conv kernel."""
    receptive_field = math.prod(shape[:-2])
    return receptive_field * shape[-2], receptive_field * shape[-1]


def glorot_uniform(shape: tuple[int, ...]) -> Draw:
    """Glorot/Xavier uniform: ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _fans(shape)
    return Draw(shape, "uniform", math.sqrt(6.0 / (fan_in + fan_out)))


def he_normal_fan_out(shape: tuple[int, ...]) -> Draw:
    """He/Kaiming normal in fan-out mode: ``N(0, 2 / fan_out)``."""
    return Draw(shape, "normal", math.sqrt(2.0 / _fans(shape)[1]))


def fan_in_uniform(shape: tuple[int, ...]) -> Draw:
    """``U(-1 / sqrt(fan_in), 1 / sqrt(fan_in))``, PyTorch's default for linear layers."""
    return Draw(shape, "uniform", 1.0 / math.sqrt(_fans(shape)[0]))


KernelInit = Callable[[tuple[int, ...]], Draw]


def conv_spec(
    kernel_size: int, c_in: int, c_out: int, kernel_init: KernelInit, *, use_bias: bool
) -> dict[str, Any]:
    """``{"kernel": [k, k, c_in, c_out]}``, plus a zero ``"bias"`` if ``use_bias``."""
    spec: dict[str, Any] = {"kernel": kernel_init((kernel_size, kernel_size, c_in, c_out))}
    if use_bias:
        spec["bias"] = np.zeros((c_out,))
    return spec


def batch_norm_spec(channels: int) -> dict[str, Any]:
    """``{"scale": ones, "bias": zeros}``, both ``[channels]``."""
    return {"scale": np.ones((channels,)), "bias": np.zeros((channels,))}


def check_num_classes(num_classes: object) -> int:
    """``num_classes`` as an int, or a ValueError naming it."""
    if not is_integer(num_classes):
        raise ValueError(f"num_classes must be a positive int or None; got {num_classes!r}.")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive; got {num_classes}.")
    return int(num_classes)


def dense_spec(d_in: int, d_out: int, kernel_init: KernelInit) -> dict[str, Any]:
    """``{"kernel": [d_in, d_out], "bias": zeros [d_out]}``."""
    return {"kernel": kernel_init((d_in, d_out)), "bias": np.zeros((d_out,))}


def make_init(spec: Any, param_dtype: jnp.dtype) -> Callable[[PRNGKey], Params]:
    """A jitted ``init(key)`` that samples every :class:`Draw` of ``spec``.

    ``spec`` is the parameter tree with :class:`Draw` leaves for random
    weights and numpy arrays for constants. All draws of one distribution come
    from a single sample, split into the weights: XLA compiles random-number
    generation once per shape, and one draw per layer made initialising a
    ResNet-12 on CPU about ten times slower.
    """
    is_draw = lambda leaf: isinstance(leaf, Draw)  # noqa: E731
    leaves, treedef = jax.tree.flatten(spec, is_leaf=is_draw)

    @jax.jit
    def init(key: PRNGKey) -> Params:
        values = [jnp.asarray(leaf, param_dtype) if not is_draw(leaf) else None for leaf in leaves]
        for distribution in ("uniform", "normal"):
            drawn = [
                i
                for i, leaf in enumerate(leaves)
                if is_draw(leaf) and leaf.distribution == distribution
            ]
            if not drawn:
                continue
            key, subkey = jax.random.split(key)
            sizes = [math.prod(leaves[i].shape) for i in drawn]
            if distribution == "uniform":
                noise = jax.random.uniform(subkey, (sum(sizes),), param_dtype, -1.0, 1.0)
            else:
                noise = jax.random.normal(subkey, (sum(sizes),), param_dtype)
            chunks = jnp.split(noise, np.cumsum(sizes)[:-1])
            for i, chunk in zip(drawn, chunks, strict=True):
                values[i] = (leaves[i].scale * chunk).reshape(leaves[i].shape).astype(param_dtype)
        return jax.tree.unflatten(treedef, values)

    return init
