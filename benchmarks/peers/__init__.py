"""Comparison baselines for jmeta's throughput benchmark.

Each peer implements the same MAML meta-training step (see
:mod:`benchmarks.peers.workloads`) in another framework or library, behind
one interface: ``build(workload, batch_size, device=None, ...) -> step_fn``
where ``step_fn()`` runs one synchronised meta-step (see
:mod:`benchmarks.peers.base`).

Peers whose optional dependencies are missing (``torch``, ``higher``,
``torchopt``, ``learn2learn``) are reported by :func:`skipped_peers` with the
reason, never raised. Importing this package imports neither JAX nor PyTorch;
a peer's framework is imported only when that peer is asked for.
"""

from __future__ import annotations

import importlib
from functools import cache

from benchmarks.peers.base import Builder, MetaStep

#: Every peer, in report order: name -> module under ``benchmarks.peers``.
PEERS: tuple[str, ...] = (
    "jmeta",
    "plain_jax",
    "torch_loop",
    "torch_higher",
    "torch_torchopt",
    "torch_func",
    "learn2learn_maml",
)


class PeerUnavailable(RuntimeError):
    """A peer's optional dependency is not installed (or fails to import)."""


@cache
def _load(name: str) -> Builder | str:
    """The peer's builder, or why it cannot be imported."""
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r}; known: {list(PEERS)}")
    try:
        module = importlib.import_module(f"benchmarks.peers.{name}")
    except ImportError as err:  # includes ModuleNotFoundError
        return f"{type(err).__name__}: {err}"
    return module.build


def get_builder(name: str) -> Builder:
    """Import one peer (and only its framework) and return its builder.

    Raises:
      KeyError: ``name`` is not a known peer.
      PeerUnavailable: its optional dependency is missing.
    """
    loaded = _load(name)
    if isinstance(loaded, str):
        raise PeerUnavailable(f"peer {name!r} unavailable: {loaded}")
    return loaded


def available_peers() -> dict[str, Builder]:
    """``{name: builder}`` for every peer whose dependencies import.

    This imports every framework present; to time peers cleanly run each one
    in its own process (as ``benchmarks/throughput.py`` does).
    """
    return {name: b for name in PEERS if not isinstance(b := _load(name), str)}


def skipped_peers() -> dict[str, str]:
    """``{name: reason}`` for every peer that cannot be imported here."""
    return {name: r for name in PEERS if isinstance(r := _load(name), str)}


__all__ = [
    "PEERS",
    "Builder",
    "MetaStep",
    "PeerUnavailable",
    "available_peers",
    "get_builder",
    "skipped_peers",
]
