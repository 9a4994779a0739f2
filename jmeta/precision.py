r"""Mixed precision: low-precision compute, float32 parameters and gradients.

:func:`mixed_precision` wraps any ``apply(params, x, ...)``: inside, the
floating-point parameters and inputs are cast to ``compute_dtype`` (bfloat16 by
default), the model runs in it, and the outputs are cast back to float32. The
parameters that the inner loop and the meta-optimizer update stay float32
("master" weights). Gradients stay float32 too: the transpose of a cast is a
cast back, so :math:`\partial \mathcal{L} / \partial \theta_{32}` arrives in
float32 (accumulated in bfloat16 within the model, then converted). The losses
in :mod:`jmeta.losses` compute in float32 whatever the prediction dtype.

bfloat16 has float32's exponent range, so nothing overflows and no loss
scaling is needed; float16 (smaller range) would need loss scaling, which this
module does not do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Cast the floating-point array leaves of ``tree`` to ``dtype``.

    Integer arrays (labels), PRNG keys and Python scalars are left alone.
    """

    def cast(x):
        if isinstance(x, jax.Array | np.ndarray) and jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(x).astype(dtype)
        return x

    return jax.tree_util.tree_map(cast, tree)


def mixed_precision(
    apply_fn: Callable[..., Any],
    compute_dtype: Any = jnp.bfloat16,
    output_dtype: Any = jnp.float32,
) -> Callable[..., Any]:
    """Run ``apply_fn`` in ``compute_dtype`` on float32 parameters and inputs.

    Args:
      apply_fn: ``(params, x, *args, **kwargs) -> outputs``; every floating
        array among its arguments (``reference=`` support inputs included) is
        cast to ``compute_dtype``.
      compute_dtype: the dtype of the model's arithmetic (``jnp.bfloat16``).
      output_dtype: the dtype the floating outputs are cast back to.

    Returns:
      A function with ``apply_fn``'s signature, to build a learner with
      (``jmeta.maml(mixed_precision(model.apply), ...)``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jmeta.precision import mixed_precision
      >>> apply = mixed_precision(lambda p, x: x @ p["w"])
      >>> p = {"w": jnp.ones((3, 2))}
      >>> apply(p, jnp.ones((4, 3))).dtype
      dtype('float32')
      >>> jax.grad(lambda p: apply(p, jnp.ones((4, 3))).sum())(p)["w"].dtype
      dtype('float32')
    """

    @functools.wraps(apply_fn)  # keeps what apply_fn states, e.g. its batch-norm policy
    def apply(params, x, *args, **kwargs):
        params, x, args, kwargs = cast_floating((params, x, args, kwargs), compute_dtype)
        return cast_floating(apply_fn(params, x, *args, **kwargs), output_dtype)

    return apply
