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
from jmeta.types import Array, Model, Params, PRNGKey


def mlp(
    sizes: Sequence[int] = (1, 40, 40, 1),
    activation: Callable[[Array], Array] = jax.nn.relu,
    *,
    kernel_init: _layers.Initializer = _layers.linear_default_init,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
) -> Model:
    """Builds a fully connected network.

    Args:
      sizes: widths from the input to the output; ``(1, 40, 40, 1)`` is MAML's
        sinusoid regressor.
      activation: applied after every layer but the last.
      kernel_init: initialiser of the weight matrices (biases start at zero).
        The default draws from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, as
        PyTorch's ``nn.Linear`` does.
      dtype: compute dtype; defaults to ``param_dtype``.
      param_dtype: dtype of the parameters; outputs are returned in it.

    Returns:
      A :class:`~jmeta.types.Model` mapping ``[n, sizes[0]]`` to
      ``[n, sizes[-1]]``, with parameters ``{"layer0": {"kernel", "bias"}, ...,
      "head": {"kernel", "bias"}}``; the last layer is ``head``.

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
    act_dtype = _layers.compute_dtype(dtype, param_dtype)

    def init(key: PRNGKey) -> Params:
        keys = jax.random.split(key, len(names))
        return {
            name: _layers.init_dense(k, d_in, d_out, kernel_init, param_dtype)
            for name, k, d_in, d_out in zip(names, keys, sizes[:-1], sizes[1:])
        }

    def apply(params: Params, x: Array) -> Array:
        x = jnp.asarray(x)
        if x.ndim != 2 or x.shape[1] != sizes[0]:
            raise ValueError(
                f"mlp: expected x of shape [n, {sizes[0]}], got {tuple(x.shape)}."
            )
        h = x.astype(act_dtype)
        for name in names[:-1]:
            h = activation(_layers.dense(h, params[name], act_dtype))
        return _layers.dense(h, params["head"], act_dtype).astype(param_dtype)

    return Model(init=init, apply=apply)
