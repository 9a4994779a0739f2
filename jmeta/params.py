"""Choosing which parameters adapt in the inner loop.

A *mask* is a pytree of Python bools with the structure of the parameters:
``True`` leaves adapt in the inner loop, ``False`` leaves stay at their
meta-learned value. Masks are built from predicates on parameter paths, so
ANIL (adapt the head only) and BOIL (adapt the body only) are one line each::

    head_only = path_mask(params, lambda path: "head" in path)
    body_only = path_mask(params, lambda path: "head" not in path)

Paths are strings such as ``"params/head/kernel"``: dictionary keys,
attribute names and sequence indices joined with ``/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jmeta.types import Params

Mask = Any  # a pytree of bools with the structure of the params
PathPredicate = Callable[[str], bool]
MaskSpec = None | Mask | PathPredicate


def path_str(path: tuple) -> str:
    """``"a/b/0"`` for a ``jax.tree_util`` key path: the form path predicates see.

    Example:
      >>> import jax
      >>> from jmeta.params import path_str
      >>> [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path({"a": [1, {"b": 2}]})]
      ['a/0', 'a/1/b']
    """
    return jax.tree_util.keystr(path, simple=True, separator="/")


def path_mask(params: Params, predicate: PathPredicate) -> Mask:
    """A mask that is ``True`` where ``predicate(path)`` holds.

    Args:
      params: the parameter pytree.
      predicate: ``(path: str) -> bool``, e.g. ``lambda p: "head" in p``.

    Returns:
      A pytree of bools with the structure of ``params``.

    Raises:
      ValueError: if the predicate selects no parameter at all, which is
        almost always a typo in a layer name.
    """
    mask = jax.tree_util.tree_map_with_path(lambda p, _: bool(predicate(path_str(p))), params)
    if not any(jax.tree_util.tree_leaves(mask)):
        paths = [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
        raise ValueError(
            "The inner-loop parameter predicate selects no parameter. "
            f"Parameter paths are: {paths[:12]}{' ...' if len(paths) > 12 else ''}"
        )
    return mask


def resolve_mask(params: Params, spec: MaskSpec) -> Mask:
    """Turn ``None`` (all adapt), a predicate or an explicit mask into a mask."""
    if spec is None:
        return jax.tree_util.tree_map(lambda _: True, params)
    if callable(spec):
        return path_mask(params, spec)
    expected, found = jax.tree.structure(params), jax.tree.structure(spec)
    if found != expected:  # type: ignore[operator]  # jaxlib's PyTreeDef: no type mypy reads
        raise ValueError(
            "The inner-loop mask must have the structure of the parameters: "
            f"expected {expected}, got {found}."
        )
    return spec


def partition(params: Params, mask: Mask) -> tuple[Params, Params]:
    """Split ``params`` into ``(selected, rest)``; unselected leaves are ``None``."""
    selected = jax.tree_util.tree_map(lambda m, p: p if m else None, mask, params)
    rest = jax.tree_util.tree_map(lambda m, p: None if m else p, mask, params)
    return selected, rest


def combine(selected: Params, rest: Params) -> Params:
    """Inverse of :func:`partition`."""
    return jax.tree_util.tree_map(
        lambda a, b: b if a is None else a, selected, rest, is_leaf=lambda x: x is None
    )
