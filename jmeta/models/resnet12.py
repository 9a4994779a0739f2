"""ResNet-12: the residual network of TADAM and MetaOptNet, with a linear head.

Four residual blocks. Each block computes::

    h = leaky_relu(bn0(conv0(x)))      # 3x3 convolutions, leaky ReLU slope 0.1
    h = leaky_relu(bn1(conv1(h)))
    h = bn2(conv2(h))
    out = max_pool_2x2(leaky_relu(h + shortcut_bn(shortcut_conv(x))))   # 1x1 shortcut

with 64, 160, 320 and 640 filters by default. The features are averaged over
space and a linear layer ``head`` maps them to logits. DropBlock, used by
MetaOptNet for regularisation, is left out: it is stochastic, and ``apply``
here is deterministic.

Batch normalisation never keeps running statistics; the ``batch_norm`` modes
are those of :func:`jmeta.models.conv4` (see :mod:`jmeta.models`).

References:
  Oreshkin, Rodriguez and Lacoste, "TADAM: Task dependent adaptive metric for
  improved few-shot learning", NeurIPS 2018. https://arxiv.org/abs/1805.10123

  Lee, Maji, Ravichandran and Soatto, "Meta-Learning with Differentiable
  Convex Optimization", CVPR 2019. https://arxiv.org/abs/1904.03758
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jmeta._dtypes import at_least_float32
from jmeta.models import _layers
from jmeta.models.policy import with_batch_norm_policy
from jmeta.types import Array, Model, Params

LEAKY_SLOPE = 0.1
CONVS_PER_BLOCK = 3


def _block_spec(c_in: int, c_out: int, use_bn: bool) -> dict[str, Any]:
    """Parameters of one residual block, Kaiming-normal (fan-out) as in MetaOptNet."""
    block = {}
    for i in range(CONVS_PER_BLOCK):
        block[f"conv{i}"] = _layers.conv_spec(
            3,
            c_in if i == 0 else c_out,
            c_out,
            _layers.he_normal_fan_out,
            use_bias=not use_bn,
        )
        if use_bn:
            block[f"bn{i}"] = _layers.batch_norm_spec(c_out)
    block["shortcut_conv"] = _layers.conv_spec(
        1, c_in, c_out, _layers.he_normal_fan_out, use_bias=not use_bn
    )
    if use_bn:
        block["shortcut_bn"] = _layers.batch_norm_spec(c_out)
    return block


def resnet12(
    num_classes: int | None,
    *,
    channels: Sequence[int] = (64, 160, 320, 640),
    input_shape: tuple[int, int, int] = (84, 84, 3),
    batch_norm: _layers.BatchNormMode = "transductive",
    conv_impl: _layers.ConvImpl = _layers.DEFAULT_CONV_IMPL,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
) -> Model:
    """Builds a ResNet-12 with a linear head.

    Args:
      num_classes: number of logits, or ``None`` for an embedding network
        without a head (``apply`` returns the pooled features), as in
        :func:`jmeta.models.conv4`.
      channels: filters of each residual block; one block per entry (four in
        the standard network).
      input_shape: ``(H, W, C)`` of one input; inputs are channels-last. Height
        and width must survive one 2x2 pooling per block.
      batch_norm: ``"transductive"``, ``"support"`` or ``"none"``, as in
        :func:`jmeta.models.conv4`. With ``"none"`` the convolutions get biases.
      conv_impl: ``"auto"`` (default), ``"adaptive"``, ``"im2col"`` or ``"xla"``, as in
        :func:`jmeta.models.conv4`.
      dtype: activation/compute dtype (e.g. ``jnp.bfloat16``); ``None``: the
        dtype of the parameters given to ``apply``, as in
        :func:`jmeta.models.conv4`. Batch-norm statistics are computed in
        float32 at least.
      param_dtype: dtype of the parameters ``init`` returns. Logits are
        returned in the dtype of the parameters given to ``apply``.

    Returns:
      A :class:`~jmeta.types.Model` whose ``apply(params, x, *, reference=None)``
      maps ``[n, *input_shape]`` inputs (float, or ``uint8`` scaled to
      ``[0, 1]``) to ``[n, num_classes]`` logits; ``reference`` as in
      :func:`jmeta.models.conv4`. The parameters are ``{"block0": {"conv0",
      "bn0", "conv1", "bn1", "conv2", "bn2", "shortcut_conv", "shortcut_bn"},
      ..., "head": {"kernel", "bias"}}``. Convolutions start Kaiming-normal
      (fan-out, as in MetaOptNet), the head ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``,
      batch-norm scales at one and biases at zero.

    Raises:
      ValueError: for an unknown option, or an input too small for the poolings.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jmeta.models import resnet12
      >>> model = resnet12(5, channels=(8, 16, 32, 64), input_shape=(32, 32, 3))
      >>> params = model.init(jax.random.key(0))
      >>> model.apply(params, jnp.zeros((4, 32, 32, 3))).shape
      (4, 5)
    """
    _layers.check_choice("batch_norm", batch_norm, _layers.BATCH_NORM_MODES)
    _layers.check_choice("conv_impl", conv_impl, _layers.CONV_IMPLS)
    channels = tuple(channels)
    input_shape = (*input_shape,)
    height, width, in_channels = input_shape
    if not channels:
        raise ValueError("resnet12: channels must name at least one block.")
    if height >> len(channels) == 0 or width >> len(channels) == 0:
        raise ValueError(
            f"resnet12: input_shape {input_shape} is too small for {len(channels)} 2x2 "
            f"poolings; height and width must be at least {2 ** len(channels)}."
        )
    use_bn = batch_norm != "none"
    spec = {}
    for b, (c_in, c_out) in enumerate(zip((in_channels, *channels[:-1]), channels, strict=True)):
        spec[f"block{b}"] = _block_spec(c_in, c_out, use_bn)
    if num_classes is not None:
        num_classes = _layers.check_num_classes(num_classes)
        spec["head"] = _layers.dense_spec(channels[-1], num_classes, _layers.fan_in_uniform)

    def apply(params: Params, x: Array, *, reference: Array | None = None) -> Array:
        act_dtype = _layers.compute_dtype(dtype, params)
        x, reference = _layers.prepare_inputs(
            x, reference, input_shape, act_dtype, batch_norm, model="resnet12"
        )

        def conv_norm(
            h: Array, layer: str, norm: str, block: Params, stat_rows: int | None
        ) -> Array:
            conv = block[layer]
            h = _layers.conv2d(h, conv["kernel"].astype(act_dtype), conv_impl)
            if use_bn:
                return _layers.batch_norm(h, block[norm], stat_rows)
            return h + conv["bias"].astype(act_dtype)

        def body(h: Array, stat_rows: int | None) -> Array:
            for b in range(len(channels)):
                block = params[f"block{b}"]
                shortcut = conv_norm(h, "shortcut_conv", "shortcut_bn", block, stat_rows)
                for i in range(CONVS_PER_BLOCK):
                    h = conv_norm(h, f"conv{i}", f"bn{i}", block, stat_rows)
                    if i < CONVS_PER_BLOCK - 1:
                        h = jax.nn.leaky_relu(h, LEAKY_SLOPE)
                h = jax.nn.leaky_relu(h + shortcut, LEAKY_SLOPE)
                h = _layers.max_pool_2x2(h)
            wide = at_least_float32(act_dtype)
            features = jnp.mean(h.astype(wide), axis=(1, 2)).astype(act_dtype)
            if num_classes is None:
                return features
            return _layers.dense(features, params["head"], act_dtype)

        out = _layers.run_with_reference(body, x, reference)
        return out.astype(_layers.params_dtype(params))

    return Model(
        init=_layers.make_init(spec, param_dtype), apply=with_batch_norm_policy(apply, batch_norm)
    )
