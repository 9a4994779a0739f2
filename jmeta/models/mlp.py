"""A multi-layer perceptron, e.g. the 1-40-40-1 sinusoid regressor of MAML.

Reference:
  Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation
  of Deep Networks", ICML 2017 (Section 5.1). https://arxiv.org/abs/1703.03400
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jmeta.models import _layers
from jmeta.models.policy import with_batch_norm_policy
from jmeta.types import Array, Model, Params


def mlp(
    sizes: Sequence[int] = (1, 40, 40, 1),
    activation: Callable[[Array], Array] = jax.nn.relu,
    *,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
) -> Model:
    """Builds a fully connected network.

    Args:
      sizes: widths from the input to the output; ``(1, 40, 40, 1)`` is MAML's
        sinusoid regressor.
      activation: applied after every layer but the last.
      dtype: compute dtype; ``None`` (the default): the dtype of the
        parameters given to ``apply`` (bfloat16 under
        :func:`jmeta.precision.mixed_precision`).
      param_dtype: dtype of the parameters ``init`` returns. Outputs are
        returned in the dtype of the parameters given to ``apply``.

    Returns:
      A :class:`~jmeta.types.Model` mapping ``[n, sizes[0]]`` to
      ``[n, sizes[-1]]``, with parameters ``{"layer0": {"kernel", "bias"}, ...,
      "head": {"kernel", "bias"}}``; the last layer is ``head``. Weights start
      ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, as PyTorch's ``nn.Linear``, and
      biases at zero.

    Raises:
      ValueError: if ``sizes`` has fewer than two entries.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jmeta.models import mlp
      >>> model = mlp((1, 40, 40, 1))
      >>> params = model.init(jax.random.key(0))
      >>> sorted(params)
      ['head', 'layer0', 'layer1']
      >>> model.apply(params, jnp.zeros((10, 1))).shape
      (10, 1)
    """
    sizes = tuple(sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp: sizes needs an input and an output width, got {sizes}.")
    names = [f"layer{i}" for i in range(len(sizes) - 2)] + ["head"]

    spec = {
        name: _layers.dense_spec(d_in, d_out, _layers.fan_in_uniform)
        for name, d_in, d_out in zip(names, sizes[:-1], sizes[1:], strict=True)
    }

    def apply(params: Params, x: Array) -> Array:
        x = jnp.asarray(x)
        if x.ndim != 2 or x.shape[1] != sizes[0]:
            raise ValueError(f"mlp: expected x of shape [n, {sizes[0]}], got {tuple(x.shape)}.")
        act_dtype = _layers.compute_dtype(dtype, params)
        h = x.astype(act_dtype)
        for name in names[:-1]:
            h = activation(_layers.dense(h, params[name], act_dtype))
        out = _layers.dense(h, params["head"], act_dtype)
        return out.astype(_layers.params_dtype(params))

    # No normalisation: each prediction is its own.
    return Model(
        init=_layers.make_init(spec, param_dtype), apply=with_batch_norm_policy(apply, "none")
    )
