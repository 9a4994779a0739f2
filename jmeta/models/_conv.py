r"""A 2-D convolution that takes the form its batching calls for.

:func:`conv2d_adaptive` is the stride-1 convolution of NHWC images by an HWIO
kernel,

.. math:: y_{n,h,w,o} = \sum_{a,b,i} \tilde x_{n,\,h+a,\,w+b,\,i}\; k_{a,b,i,o},

(:math:`\tilde x`: the zero-padded input), bound as a JAX primitive with its own
batching and differentiation rules, so that every convolution of a
meta-learning step is computed in the form that suits how its kernel is shared:

* Under ``vmap`` over tasks with a **shared** kernel (wherever the
  meta-parameters enter unchanged: the embedding of the metric learners,
  MAML's first inner step), the task axis is folded into the image axis: one
  ordinary convolution of every task's images.
  Likewise, per-task kernels applied to shared images become one convolution
  with the kernels side by side as output channels.
* Where ``vmap`` gives **every task its own kernel and its own images** (the
  query pass at MAML's adapted weights, and the gradients of every kernel),
  the primitive gains a task axis, and the backend computes it in the form
  measured fastest there (:data:`FORMS`): on CPU one ordinary convolution per
  task in a sequential loop; elsewhere one batched matrix product over the
  :math:`k_h k_w` shifted copies of the input (im2col), which ``vmap`` of
  ``lax.conv`` would instead make a grouped convolution.

The gradient with respect to the kernel,

.. math:: \partial_k \langle c, y \rangle_{a,b,i,o}
          = \sum_{n,h,w} \tilde x_{n,\,h+a,\,w+b,\,i}\; c_{n,h,w,o},

is a second primitive, so that its form too is chosen per backend and per
batching. The gradient with respect to the input is the first primitive again,
with the kernel rotated by 180 degrees and its channels swapped. Both
primitives are bilinear and each other's transposes, so the convolution is
differentiable to any order, in forward and in reverse mode, and ``vmap``-able
any number of times.

On CPU this is what ``conv_impl="auto"`` means for :func:`jmeta.models.conv4`
and :func:`jmeta.models.resnet12` (see :mod:`jmeta.models` for the
measurements).
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jmeta.types import Array

Padding = tuple[tuple[int, int], tuple[int, int]]


class Forms(NamedTuple):
    """How one backend computes the two primitives.

    Attributes:
      conv: a convolution with one kernel for all images: ``"xla"``
        (``lax.conv_general_dilated``) or ``"im2col"`` (the shifted copies and
        one matrix product).
      kernel_grad: a kernel gradient over all images: ``"xla"`` (a
        ``lax.conv_general_dilated`` with the images' channels as its batch,
        as JAX differentiates ``lax.conv``) or ``"im2col"``.
      task_conv: a convolution with a task axis (a kernel per task):
        ``"loop-xla"`` or ``"loop-im2col"`` (that form, one task after another,
        in a ``lax.map``), ``"im2col"`` (one batched matrix product) or
        ``"xla"`` (``vmap`` of ``lax.conv``: a grouped convolution).
      task_kernel_grad: a kernel gradient with a task axis, in the same forms.
      taps_below: a convolution of fewer input channels than this, with or
        without a task axis, is computed as ``kh * kw * C_in`` broadcast
        multiply-adds of shifted copies of the input, which XLA fuses into
        one loop, and its kernel gradient as one matrix product of those
        copies laid out channels first (images of one to three channels: the
        first layer).
    """

    conv: Literal["xla", "im2col"]
    kernel_grad: Literal["xla", "im2col"]
    task_conv: Literal["loop-xla", "loop-im2col", "im2col", "xla"]
    task_kernel_grad: Literal["loop-xla", "loop-im2col", "im2col", "xla"]
    taps_below: int = 0


#: The forms per platform; ``"default"`` serves every platform not listed. The CPU's were
#: chosen by timing Conv4 steps on a 2-core CPU (``benchmarks/cpu_targets.py`` compares the
#: result with PyTorch; a kernel gradient in XLA's convolution form inside a loop ran 30-40
#: times slower than outside one). The default's are not measured: ``conv_impl="auto"``
#: uses ``"im2col"`` off CPU.
FORMS: dict[str, Forms] = {
    "cpu": Forms(conv="xla", kernel_grad="xla", task_conv="loop-xla",
                 task_kernel_grad="loop-im2col", taps_below=4),
    "default": Forms(conv="xla", kernel_grad="xla", task_conv="im2col",
                     task_kernel_grad="im2col"),
}  # fmt: skip

conv_p = Primitive("jmeta_conv2d")
kernel_grad_p = Primitive("jmeta_conv2d_kernel_grad")


def conv2d_adaptive(x: Array, kernel: Array) -> Array:
    """Stride-1, ``SAME``-padded convolution of NHWC ``x`` by an HWIO ``kernel``.

    The same function as ``lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"))``, up to float rounding; see
    the module docstring for how it is computed.

    Args:
      x: ``[n, H, W, C_in]``.
      kernel: ``[kh, kw, C_in, C_out]``, of the dtype of ``x``.

    Returns:
      ``[n, H, W, C_out]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jmeta.models._conv import conv2d_adaptive
      >>> x, kernels = jnp.ones((4, 2, 8, 8, 1)), jnp.ones((4, 3, 3, 1, 16))
      >>> jax.vmap(conv2d_adaptive)(x, kernels).shape   # a kernel per task
      (4, 2, 8, 8, 16)
    """
    if x.ndim != 4 or kernel.ndim != 4 or x.shape[-1] != kernel.shape[2]:
        raise ValueError(
            f"conv2d: expected x [n, H, W, C] and kernel [kh, kw, C, C_out]; got x "
            f"{tuple(x.shape)} and kernel {tuple(kernel.shape)}."
        )
    if x.dtype != kernel.dtype:
        raise TypeError(f"conv2d: x is {x.dtype} but kernel is {kernel.dtype}; cast one.")
    padding = tuple(((k - 1) // 2, k // 2) for k in kernel.shape[:2])  # XLA's "SAME"
    return conv_p.bind(x, kernel, padding=padding, batch_dims=0)


# --------------------------------------------------------------------------- shapes
# Both primitives take arrays [*B, ...] with ``batch_dims`` leading task axes shared by
# both operands: conv_p(x [*B, n, H, W, Ci], kernel [*B, kh, kw, Ci, Co]) -> [*B, n, H', W', Co]
# and kernel_grad_p(x [*B, n, H, W, Ci], ct [*B, n, H', W', Co]) -> [*B, kh, kw, Ci, Co].


def _out_hw(hw, kernel_hw, padding):
    return tuple(s + lo + hi - k + 1 for s, k, (lo, hi) in zip(hw, kernel_hw, padding, strict=True))


def _conv_abstract(x, kernel, *, padding, batch_dims):
    nb = batch_dims
    hw = _out_hw(x.shape[nb + 1 : nb + 3], kernel.shape[nb : nb + 2], padding)
    # ``update`` keeps the operands' varying mesh axes inside shard_map (all operands
    # share them: ``jmeta.step`` casts the meta-parameters to varying).
    return x.update(shape=(*x.shape[: nb + 1], *hw, kernel.shape[-1]), weak_type=False)


def _kernel_grad_abstract(x, ct, *, padding, batch_dims, kernel_hw):
    shape = (*x.shape[:batch_dims], *kernel_hw, x.shape[-1], ct.shape[-1])
    return x.update(shape=shape, weak_type=False)


conv_p.def_abstract_eval(_conv_abstract)
kernel_grad_p.def_abstract_eval(_kernel_grad_abstract)


# --------------------------------------------------------------------------- the forms


def _xla_conv(x, kernel, padding):
    return lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _xla_kernel_grad(x, ct, padding, kernel_hw):
    # A convolution over (H, W) whose batch is x's channels and whose reduced
    # feature axis is the images: out[i, a, b, o] = sum_{n,h,w} x~[n,h+a,w+b,i] ct[n,h,w,o].
    out = lax.conv_general_dilated(
        x, ct, (1, 1), padding, dimension_numbers=("CHWN", "IHWO", "NHWC")
    )
    return jnp.transpose(out, (1, 2, 0, 3))


def _patches(x, kernel_hw, padding):
    """``[..., n, H', W', kh * kw * Ci]``: shifted copies, rows then columns, channels inner."""
    kh, kw = kernel_hw
    height, width = _out_hw(x.shape[-3:-1], kernel_hw, padding)
    if (kh, kw) == (1, 1) and padding == ((0, 0), (0, 0)):
        return x
    padded = jnp.pad(x, ((0, 0),) * (x.ndim - 3) + tuple(padding) + ((0, 0),))
    shifted = [padded[..., i : i + height, j : j + width, :] for i in range(kh) for j in range(kw)]
    return jnp.concatenate(shifted, axis=-1)


def _im2col_conv(x, kernel, padding):
    kh, kw, ci, co = kernel.shape[-4:]
    flat = kernel.reshape(*kernel.shape[:-4], kh * kw * ci, co)
    return jnp.einsum("...nhwk,...ko->...nhwo", _patches(x, (kh, kw), padding), flat)


def _im2col_kernel_grad(x, ct, padding, kernel_hw):
    grad = jnp.einsum("...nhwk,...nhwo->...ko", _patches(x, kernel_hw, padding), ct)
    return grad.reshape(*grad.shape[:-2], *kernel_hw, x.shape[-1], ct.shape[-1])


def _taps_conv(x, kernel, padding):
    kh, kw = kernel.shape[-4:-2]
    height, width = _out_hw(x.shape[-3:-1], (kh, kw), padding)
    padded = jnp.pad(x, ((0, 0),) * (x.ndim - 3) + tuple(padding) + ((0, 0),))
    out = 0
    for i, j, c in itertools.product(range(kh), range(kw), range(x.shape[-1])):
        # [..., n, H', W', 1] * [..., 1, 1, 1, Co]: the task axes of x and kernel align.
        tap = kernel[..., i, j, c, :].reshape(*kernel.shape[:-4], 1, 1, 1, kernel.shape[-1])
        out = out + padded[..., i : i + height, j : j + width, c : c + 1] * tap
    return out


def _taps_kernel_grad(x, ct, padding, kernel_hw):
    """The kernel gradient as one matrix product of the shifted copies, laid out
    ``[..., kh * kw * Ci, n * H' * W']`` (cheap to build for few channels), by ``ct``."""
    kh, kw = kernel_hw
    height, width = _out_hw(x.shape[-3:-1], kernel_hw, padding)
    lead, ci = x.shape[:-4], x.shape[-1]
    channels_first = jnp.moveaxis(x, -1, -4)  # [..., Ci, n, H, W]
    padded = jnp.pad(channels_first, ((0, 0),) * (x.ndim - 2) + tuple(padding))
    taps = [padded[..., i : i + height, j : j + width] for i in range(kh) for j in range(kw)]
    patches = jnp.stack(taps, axis=-5).reshape(*lead, kh * kw * ci, -1)
    grad = patches @ ct.reshape(*lead, -1, ct.shape[-1])
    return grad.reshape(*lead, kh, kw, ci, ct.shape[-1])


_CONV = {"xla": _xla_conv, "im2col": _im2col_conv}
_KERNEL_GRAD = {"xla": _xla_kernel_grad, "im2col": _im2col_kernel_grad}


def _with_tasks(one, batched, form, batch_dims, *arrays):
    """``one`` (a form for arrays without task axes) over ``batch_dims`` leading task
    axes of every array, in ``form``; ``batched``: the batched im2col form."""
    if form == "im2col":
        return batched(*arrays)
    lead = arrays[0].shape[:batch_dims]
    flat = [a.reshape(-1, *a.shape[batch_dims:]) for a in arrays]
    if form.startswith("loop"):
        out = lax.map(lambda xs: one(*xs), flat)
    else:  # "xla": JAX's own batching of lax.conv, a grouped convolution
        out = jax.vmap(one)(*flat)
    return out.reshape(*lead, *out.shape[1:])


def _conv_impl(x, kernel, *, padding, batch_dims, forms: Forms):
    if x.shape[-1] < forms.taps_below:
        return _taps_conv(x, kernel, padding)
    if not batch_dims:
        return _CONV[forms.conv](x, kernel, padding)
    form = forms.task_conv
    one = partial(_CONV[form.removeprefix("loop-")], padding=padding)
    batched = partial(_im2col_conv, padding=padding)
    return _with_tasks(one, batched, form, batch_dims, x, kernel)


def _kernel_grad_impl(x, ct, *, padding, batch_dims, kernel_hw, forms: Forms):
    if x.shape[-1] < forms.taps_below:
        return _taps_kernel_grad(x, ct, padding, kernel_hw)
    if not batch_dims:
        return _KERNEL_GRAD[forms.kernel_grad](x, ct, padding, kernel_hw)
    form = forms.task_kernel_grad
    one = partial(_KERNEL_GRAD[form.removeprefix("loop-")], padding=padding, kernel_hw=kernel_hw)
    batched = partial(_im2col_kernel_grad, padding=padding, kernel_hw=kernel_hw)
    return _with_tasks(one, batched, form, batch_dims, x, ct)


def platform_forms(platform: str) -> Forms:
    """The :class:`Forms` that ``platform`` (``"cpu"``, ``"cuda"``, ...) computes with."""
    return FORMS.get(platform, FORMS["default"])


def _register(prim: Primitive, impl) -> None:
    def lowering(platform):
        # FORMS is read when a program is lowered, so a change applies to later compilations.
        return mlir.lower_fun(
            lambda *args, **params: impl(*args, **params, forms=platform_forms(platform)),
            multiple_results=False,
        )

    mlir.register_lowering(prim, lowering("default"))
    mlir.register_lowering(prim, lowering("cpu"), platform="cpu")

    @partial(jax.jit, static_argnames=("params",))
    def run(*args, params):
        return prim.bind(*args, **dict(params))

    prim.def_impl(lambda *args, **params: run(*args, params=tuple(params.items())))


_register(conv_p, _conv_impl)
_register(kernel_grad_p, _kernel_grad_impl)


# --------------------------------------------------------------------------- differentiation


def _input_grad(ct, kernel, padding, batch_dims):
    """The transpose of ``x -> conv(x, kernel)`` at ``ct``: the convolution of ``ct`` by
    the kernel rotated 180 degrees with its channels swapped, padded the other way."""
    nb = batch_dims
    kernel_hw = kernel.shape[nb : nb + 2]
    rotated = jnp.swapaxes(jnp.flip(kernel, axis=(nb, nb + 1)), nb + 2, nb + 3)
    padding = tuple(
        (k - 1 - lo, k - 1 - hi) for (lo, hi), k in zip(padding, kernel_hw, strict=True)
    )
    return conv_p.bind(ct, rotated, padding=padding, batch_dims=nb)


def _conv_transpose_x(ct, x, kernel, *, padding, batch_dims):
    return _input_grad(ct, kernel, padding, batch_dims)


def _conv_transpose_kernel(ct, x, kernel, *, padding, batch_dims):
    kernel_hw = tuple(kernel.aval.shape[batch_dims : batch_dims + 2])
    return kernel_grad_p.bind(x, ct, padding=padding, batch_dims=batch_dims, kernel_hw=kernel_hw)


def _kernel_grad_transpose_x(g, x, ct, *, padding, batch_dims, kernel_hw):
    return _input_grad(ct, g, padding, batch_dims)


def _kernel_grad_transpose_ct(g, x, ct, *, padding, batch_dims, kernel_hw):
    return conv_p.bind(x, g, padding=padding, batch_dims=batch_dims)


ad.defbilinear(conv_p, _conv_transpose_x, _conv_transpose_kernel)
ad.defbilinear(kernel_grad_p, _kernel_grad_transpose_x, _kernel_grad_transpose_ct)


# --------------------------------------------------------------------------- batching


def _to_front(a, axis):
    return a if axis is None else jnp.moveaxis(a, axis, 0)


def _fold(a, axis):
    """Merges the leading (new) axis of ``a`` into ``axis`` (of the array without it),
    as the outer part of the merged axis."""
    moved = jnp.moveaxis(a, 0, axis)
    return moved.reshape(*moved.shape[:axis], -1, *moved.shape[axis + 2 :])


def _unfold(a, size, axis):
    """Splits ``axis`` of ``a`` into ``(size, rest)`` and moves ``size`` to the front."""
    axis %= a.ndim
    split = a.reshape(*a.shape[:axis], size, a.shape[axis] // size, *a.shape[axis + 1 :])
    return jnp.moveaxis(split, axis, 0)


def _conv_batch(args, dims, *, padding, batch_dims):
    (x, kernel), (x_dim, k_dim) = args, dims
    x, kernel, nb = _to_front(x, x_dim), _to_front(kernel, k_dim), batch_dims
    if k_dim is None:  # one kernel: the tasks' images are one batch of images
        out = conv_p.bind(_fold(x, nb), kernel, padding=padding, batch_dims=nb)
        return _unfold(out, x.shape[0], nb), 0
    if x_dim is None:  # one set of images: the kernels side by side are one kernel
        out = conv_p.bind(x, _fold(kernel, kernel.ndim - 2), padding=padding, batch_dims=nb)
        return _unfold(out, kernel.shape[0], -1), 0
    return conv_p.bind(x, kernel, padding=padding, batch_dims=nb + 1), 0


def _kernel_grad_batch(args, dims, *, padding, batch_dims, kernel_hw):
    (x, ct), (x_dim, c_dim) = args, dims
    x, ct, nb = _to_front(x, x_dim), _to_front(ct, c_dim), batch_dims
    params = dict(padding=padding, batch_dims=nb, kernel_hw=kernel_hw)
    if c_dim is None:  # one cotangent: the tasks' inputs side by side are input channels
        out = kernel_grad_p.bind(_fold(x, x.ndim - 2), ct, **params)
        return _unfold(out, x.shape[0], -2), 0
    if x_dim is None:  # one input: the tasks' cotangents side by side are output channels
        out = kernel_grad_p.bind(x, _fold(ct, ct.ndim - 2), **params)
        return _unfold(out, ct.shape[0], -1), 0
    return kernel_grad_p.bind(x, ct, **{**params, "batch_dims": nb + 1}), 0


batching.primitive_batchers[conv_p] = _conv_batch
batching.primitive_batchers[kernel_grad_p] = _kernel_grad_batch
