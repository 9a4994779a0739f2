"""Conv4: the four-block convolutional network of MAML (Finn et al., 2017).

Each block is a 3x3 ``SAME`` convolution, batch normalisation, ReLU and 2x2
max-pooling (stride 2, odd sizes rounded down); a linear layer ``head`` maps
the flattened features to logits. A 28x28 Omniglot image leaves 1x1x64
features; an 84x84 miniImageNet image with MAML's 32 filters leaves
5x5x32 = 800.

Batch normalisation never keeps running statistics (see :mod:`jmeta.models`
for the policy): with ``batch_norm="transductive"`` every layer is normalised
with the statistics of the batch given to ``apply``, as in MAML; with
``batch_norm="support"``, ``apply(params, x, reference=support_x)`` normalises
with the statistics of ``support_x`` alone, so a prediction for one query does
not depend on the other queries.

Reference:
  Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation
  of Deep Networks", ICML 2017. https://arxiv.org/abs/1703.03400
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jmeta.models import _layers
from jmeta.models.policy import with_batch_norm_policy
from jmeta.types import Array, Model, Params

NUM_BLOCKS = 4


def conv4(
    num_classes: int | None,
    *,
    channels: int = 64,
    input_shape: tuple[int, int, int] = (28, 28, 1),
    batch_norm: _layers.BatchNormMode = "transductive",
    conv_impl: _layers.ConvImpl = _layers.DEFAULT_CONV_IMPL,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
) -> Model:
    """Builds the Conv4 network of MAML.

    Args:
      num_classes: number of logits (the ``N`` of ``N``-way classification), or
        ``None`` for an embedding network without a head, whose ``apply``
        returns the flattened features of the last block (for the metric
        learners: :func:`~jmeta.protonet`, :func:`~jmeta.matching_net`,
        :func:`~jmeta.r2d2`).
      channels: filters in every convolution. 64 for Omniglot; MAML uses 32 on
        84x84 miniImageNet to limit overfitting.
      input_shape: ``(H, W, C)`` of one input; inputs are channels-last.
      batch_norm: ``"transductive"`` (statistics of the batch given to
        ``apply``), ``"support"`` (statistics of the ``reference`` batch) or
        ``"none"`` (no normalisation; the convolutions get a bias instead).
      conv_impl: how the convolutions are computed; all compute the same
        function up to float rounding (see :mod:`jmeta.models` for the measured
        speeds). ``"auto"`` (the default): the fastest measured on the backend
        the model is traced for, ``"adaptive"`` on CPU and ``"im2col"``
        elsewhere. ``"adaptive"``: ``lax.conv`` where ``vmap`` shares the
        kernel between tasks, and, where every task has its own kernel, a form
        the backend chooses (on CPU one ``lax.conv`` per task in a loop).
        ``"im2col"``: shifted copies and one matrix product, which ``vmap``
        over per-task weights turns into a batched matmul. ``"xla"``:
        ``lax.conv_general_dilated``, which ``vmap`` over per-task weights
        turns into a grouped convolution.
      dtype: dtype of the activations and of the convolution/matmul inputs, e.g.
        ``jnp.bfloat16``. ``None`` (the default): the dtype of the parameters
        given to ``apply``, so :func:`jmeta.precision.mixed_precision`, which
        casts them to bfloat16, makes the model compute in bfloat16.
        Batch-norm statistics are computed in float32 at least.
      param_dtype: dtype of the parameters ``init`` returns. Logits are
        returned in the dtype of the parameters given to ``apply``.

    Returns:
      A :class:`~jmeta.types.Model` whose ``apply(params, x, *, reference=None)``
      maps ``x`` of shape ``[n, *input_shape]`` to ``[n, num_classes]`` logits.
      ``uint8`` inputs (``x`` or ``reference``) are scaled to ``[0, 1]``; float
      inputs are used as given. ``reference`` is the batch whose statistics
      normalise every layer in ``"support"`` mode (``x`` itself when ``None``),
      and is ignored in the other modes, so algorithms may always pass it. The
      parameters are ``{"conv0": {"kernel"}, "bn0": {"scale", "bias"}, ...,
      "conv3", "bn3", "head": {"kernel", "bias"}}``; only the last layer's path
      contains ``"head"``. Kernels start Glorot-uniform (MAML's choice),
      batch-norm scales at one and biases at zero.

    Raises:
      ValueError: for an unknown option, or an input too small for four poolings.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jmeta.models import conv4
      >>> model = conv4(5, channels=32, input_shape=(84, 84, 3))
      >>> params = model.init(jax.random.key(0))
      >>> params["head"]["kernel"].shape
      (800, 5)
      >>> model.apply(params, jnp.zeros((10, 84, 84, 3))).shape
      (10, 5)
    """
    _layers.check_choice("batch_norm", batch_norm, _layers.BATCH_NORM_MODES)
    _layers.check_choice("conv_impl", conv_impl, _layers.CONV_IMPLS)
    input_shape = (*input_shape,)
    height, width, in_channels = input_shape
    out_height, out_width = height >> NUM_BLOCKS, width >> NUM_BLOCKS
    if out_height == 0 or out_width == 0:
        raise ValueError(
            f"conv4: input_shape {input_shape} is too small for {NUM_BLOCKS} 2x2 poolings; "
            f"height and width must be at least {2**NUM_BLOCKS}."
        )
    use_bn = batch_norm != "none"
    spec = {}
    c_in = in_channels
    for i in range(NUM_BLOCKS):
        spec[f"conv{i}"] = _layers.conv_spec(
            3, c_in, channels, _layers.glorot_uniform, use_bias=not use_bn
        )
        if use_bn:
            spec[f"bn{i}"] = _layers.batch_norm_spec(channels)
        c_in = channels
    if num_classes is not None:
        num_classes = _layers.check_num_classes(num_classes)
        spec["head"] = _layers.dense_spec(
            out_height * out_width * channels, num_classes, _layers.glorot_uniform
        )

    def apply(params: Params, x: Array, *, reference: Array | None = None) -> Array:
        act_dtype = _layers.compute_dtype(dtype, params)
        x, reference = _layers.prepare_inputs(
            x, reference, input_shape, act_dtype, batch_norm, model="conv4"
        )

        def body(h: Array, num_stat_rows: int | None) -> Array:
            for i in range(NUM_BLOCKS):
                conv = params[f"conv{i}"]
                h = _layers.conv2d(h, conv["kernel"].astype(act_dtype), conv_impl)
                if use_bn:
                    h = _layers.batch_norm(h, params[f"bn{i}"], num_stat_rows)
                else:
                    h = h + conv["bias"].astype(act_dtype)
                h = _layers.max_pool_2x2(jax.nn.relu(h))
            h = h.reshape(h.shape[0], -1)
            return h if num_classes is None else _layers.dense(h, params["head"], act_dtype)

        out = _layers.run_with_reference(body, x, reference)
        return out.astype(_layers.params_dtype(params))

    return Model(
        init=_layers.make_init(spec, param_dtype), apply=with_batch_norm_policy(apply, batch_norm)
    )
