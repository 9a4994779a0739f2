"""Device-varying types under ``shard_map`` (the varying-manual-axes system).

Inside ``shard_map`` every value is typed as varying or invariant across each
mesh axis. Differentiating a function of an invariant (replicated) value that
mixes it with varying (per-device) data sums the gradient over the devices:
the transpose of the implicit broadcast is a ``psum``. Casting the value to
varying first keeps each device's gradient its own. Outside ``shard_map`` (and
under ``pmap``) nothing is typed this way and the cast is a no-op.
"""

from __future__ import annotations

from typing import Any

import jax


def varying_axes(x: Any) -> frozenset:
    """The mesh axes over which the traced value ``x`` may differ between devices."""
    return frozenset(jax.typeof(x).manual_axis_type.varying)


def device_varying(tree: Any, axis_name: str) -> Any:
    """Cast every leaf of ``tree`` that is invariant over ``axis_name`` to varying."""

    def cast(x):
        if axis_name in varying_axes(x):
            return x
        return jax.lax.pcast(x, axis_name, to="varying")

    return jax.tree_util.tree_map(cast, tree)
