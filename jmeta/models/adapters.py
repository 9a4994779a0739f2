"""Wrap Flax (linen or NNX) and Equinox modules as jmeta :class:`~jmeta.types.Model`\\ s.

A jmeta model's parameters are its whole state: meta-learning algorithms
``vmap`` ``apply`` over tasks with per-task weights and differentiate through
it, so anything a module would mutate (running batch-norm averages, RNG
counters) would either be silently dropped or leak between tasks. The adapters
therefore accept modules whose only state is trainable parameters and raise a
``ValueError`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import jax
import jax.numpy as jnp
from flax import linen, nnx

from jmeta.types import Array, Model, Params, PRNGKey

_STATEFUL_HINT = (
    "jmeta models keep no state besides their parameters: batch statistics must "
    "come from the current batch (running averages, as with "
    "use_running_average=True, would be shared across tasks and leak information "
    "between them), and stochastic layers must be deterministic. Use a "
    "normalisation without running statistics (jmeta.models.conv4/resnet12, or "
    "LayerNorm/GroupNorm) and deterministic dropout."
)


def from_linen(module: linen.Module, example_x: Any, **apply_kwargs: Any) -> Model:
    """Wraps a Flax linen module whose only variable collection is ``params``.

    Args:
      module: the module; it is called as ``module.apply({"params": params}, x,
        **apply_kwargs)``.
      example_x: an input batch (or anything with ``shape`` and ``dtype``, e.g.
        a ``jax.ShapeDtypeStruct``) used to initialise the parameters.
      **apply_kwargs: extra keyword arguments for every call of the module,
        e.g. ``deterministic=True``.

    Returns:
      A :class:`~jmeta.types.Model` with ``init(key) = module.init(key, x)["params"]``.

    Raises:
      ValueError: if the module creates collections other than ``params``
        (e.g. ``batch_stats``).

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn
      >>> from jmeta.models import from_linen
      >>> model = from_linen(nn.Dense(3), jnp.zeros((1, 4)))
      >>> params = model.init(jax.random.key(0))
      >>> model.apply(params, jnp.ones((2, 4))).shape
      (2, 3)
    """
    shape, dtype = tuple(example_x.shape), jnp.dtype(example_x.dtype)

    def init_variables(key: PRNGKey) -> Mapping[str, Any]:
        return module.init(key, jnp.zeros(shape, dtype), **apply_kwargs)

    collections = set(jax.eval_shape(init_variables, jax.random.key(0)))
    extra = sorted(collections - {"params"})
    if extra:
        raise ValueError(
            f"from_linen: {type(module).__name__} creates the variable collections "
            f"{extra} besides 'params'. {_STATEFUL_HINT}"
        )

    def init(key: PRNGKey) -> Params:
        return init_variables(key).get("params", {})

    def apply(params: Params, x: Array) -> Array:
        # Not a (outputs, state) pair: from_linen refuses modules with mutable collections.
        return cast(Array, module.apply({"params": params}, x, **apply_kwargs))

    return Model(init=init, apply=apply)


def from_nnx(
    module_or_factory: nnx.Module | Callable[[nnx.Rngs], nnx.Module], **call_kwargs: Any
) -> Model:
    """Wraps a Flax NNX module through ``nnx.split`` / ``nnx.merge``.

    Args:
      module_or_factory: either a factory ``rngs -> module``, e.g. ``lambda
        rngs: MyModule(..., rngs=rngs)``, which ``init(key)`` calls with
        ``nnx.Rngs(key)`` to draw fresh weights; or a module instance, whose
        current weights ``init`` returns whatever its key (to wrap a trained
        module).
      **call_kwargs: extra keyword arguments for every call of the module.

    Returns:
      A :class:`~jmeta.types.Model` whose parameters are the module's
      ``nnx.Param`` variables as a plain nested dict (``nnx.to_pure_dict``), and
      whose ``apply(params, x)`` calls a module rebuilt by ``nnx.merge``.

    Raises:
      ValueError: if the module holds variables other than ``nnx.Param`` (e.g.
        ``BatchStat`` of ``nnx.BatchNorm``, or the RNG state of
        ``nnx.Dropout(rngs=...)``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from jmeta.models import from_nnx
      >>> model = from_nnx(lambda rngs: nnx.Linear(4, 3, rngs=rngs))
      >>> params = model.init(jax.random.key(0))
      >>> model.apply(params, jnp.ones((2, 4))).shape
      (2, 3)
    """
    if isinstance(module_or_factory, nnx.Module):
        module = module_or_factory
        weights = nnx.to_pure_dict(nnx.state(module, nnx.Param))

        def init(key: PRNGKey) -> Params:
            del key  # the module's own weights
            return weights

    else:
        factory = module_or_factory
        module = nnx.eval_shape(lambda: factory(nnx.Rngs(0)))

        def init(key: PRNGKey) -> Params:
            return nnx.to_pure_dict(nnx.state(factory(nnx.Rngs(key)), nnx.Param))

    graphdef, _, rest = nnx.split(module, nnx.Param, ...)  # type: ignore[misc]  # flax types it as variadic
    others = [".".join(map(str, path)) for path, _ in nnx.to_flat_state(rest)]
    if others:
        raise ValueError(
            f"from_nnx: {type(module).__name__} holds non-parameter variables {others}. "
            f"{_STATEFUL_HINT}"
        )

    def apply(params: Params, x: Array) -> Array:
        return nnx.merge(graphdef, params)(x, **call_kwargs)

    return Model(init=init, apply=apply)


def from_equinox(module_or_factory: Any, *, batched: bool = False, **call_kwargs: Any) -> Model:
    """Wraps an Equinox module through ``eqx.partition`` / ``eqx.combine``.

    Requires the ``equinox`` extra (``pip install jmeta[equinox]``).

    Args:
      module_or_factory: either a factory ``key -> module``, e.g. ``lambda key:
        eqx.nn.MLP(1, 1, 40, 2, key=key)``, called by ``init(key)``; or a
        module instance, whose current weights ``init`` returns whatever its key.
      batched: Equinox modules usually act on one example, so by default
        ``apply`` maps the module over the leading axis of ``x`` with
        ``jax.vmap``. Set ``True`` for a module that takes the batch itself.
      **call_kwargs: extra keyword arguments for every call of the module.

    Returns:
      A :class:`~jmeta.types.Model` whose parameters are the module's
      floating-point arrays (``eqx.is_inexact_array``), as a module-shaped
      pytree with ``None`` elsewhere. Path-based selection works on
      ``jax.tree_util.keystr`` names such as ``".layers[2].weight"``.

    Raises:
      ValueError: if the module holds state (``eqx.nn.StateIndex``, as in
        ``eqx.nn.BatchNorm``).

    Example:
      >>> import jax, jax.numpy as jnp, equinox as eqx
      >>> from jmeta.models import from_equinox
      >>> model = from_equinox(lambda key: eqx.nn.MLP(1, 1, 40, 2, key=key))
      >>> params = model.init(jax.random.key(0))
      >>> model.apply(params, jnp.zeros((10, 1))).shape
      (10, 1)
    """
    import equinox as eqx

    if isinstance(module_or_factory, eqx.Module):
        module = module_or_factory
        weights, static = eqx.partition(module, eqx.is_inexact_array)

        def init(key: PRNGKey) -> Params:
            del key  # the module's own weights
            return weights

    else:
        factory = module_or_factory
        # A concrete module (not eval_shape), so non-float arrays in the static
        # part stay real arrays.
        module = factory(jax.random.key(0))
        static = eqx.partition(module, eqx.is_inexact_array)[1]

        def init(key: PRNGKey) -> Params:
            return eqx.partition(factory(key), eqx.is_inexact_array)[0]

    is_state = lambda leaf: isinstance(leaf, eqx.nn.StateIndex)  # noqa: E731
    if any(is_state(leaf) for leaf in jax.tree.leaves(module, is_leaf=is_state)):
        raise ValueError(
            f"from_equinox: {type(module).__name__} holds state (eqx.nn.StateIndex). "
            f"{_STATEFUL_HINT}"
        )

    def apply(params: Params, x: Array) -> Array:
        call = eqx.combine(params, static)
        if batched:
            return call(x, **call_kwargs)
        return jax.vmap(lambda example: call(example, **call_kwargs))(x)

    return Model(init=init, apply=apply)
