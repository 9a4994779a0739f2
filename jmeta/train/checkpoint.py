"""Checkpoints of a :class:`~jmeta.MetaTrainState` with orbax-checkpoint.

A save goes to a temporary folder that orbax renames into place once complete,
so a process killed at any moment leaves the previous checkpoints intact and
never a half-written one that looks finished. Only the last ``keep`` are kept.

Restoring reads every array to host memory first and then places it, so a
state saved from any number of devices (sharded or replicated) restores onto
any other: one device by default, or the shardings the caller gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np


class Checkpoints:
    """The checkpoints of one run: ``<directory>/<step>/``.

    Args:
      directory: the folder holding the numbered checkpoints (created if missing).
      keep: how many of the most recent to keep.

    Example:
      >>> ckpts = Checkpoints("runs/x/checkpoints", keep=3)  # doctest: +SKIP
      >>> ckpts.save(100, state)  # doctest: +SKIP
      >>> state = ckpts.restore(like=fresh_state)  # doctest: +SKIP
    """

    def __init__(self, directory: str | Path, *, keep: int = 3):
        import orbax.checkpoint as ocp

        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """The steps of the finished checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def latest(self) -> int | None:
        """The step of the newest finished checkpoint, or ``None``."""
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any) -> None:
        """Write ``state`` as checkpoint ``step`` (blocking; atomic)."""
        import orbax.checkpoint as ocp

        self._manager.save(int(step), args=ocp.args.PyTreeSave(state), force=True)
        self._manager.wait_until_finished()

    def restore(self, like: Any, step: int | None = None, sharding: Any = None) -> Any:
        """Read checkpoint ``step`` (default: the newest) into the structure of ``like``.

        Args:
          like: a pytree with the saved structure, shapes and dtypes (e.g. a
            freshly initialised state; its values are not used).
          step: which checkpoint; ``None`` for the newest.
          sharding: where to place the arrays: ``None`` for the default
            device, or a ``jax.sharding.Sharding`` (or a pytree of them
            matching ``like``) for several devices.

        Raises:
          FileNotFoundError: there is no such checkpoint.
          ValueError: the checkpoint does not match ``like``.
        """
        import orbax.checkpoint as ocp

        step = self.latest() if step is None else int(step)
        if step is None or step not in self.steps():
            raise FileNotFoundError(
                f"no checkpoint {'' if step is None else f'for step {step} '}in {self.directory}"
                f" (found steps {self.steps()})."
            )
        target = jax.tree.map(lambda x: np.zeros(np.shape(x), x.dtype), like)
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
        try:
            host = self._manager.restore(
                step, args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args)
            )
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"checkpoint {step} in {self.directory} does not match the expected state: {err}"
            ) from err
        _check_like(host, target, f"checkpoint {step} in {self.directory}")
        return jax.device_put(host, sharding)

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_like(restored: Any, target: Any, what: str) -> None:
    for (path, got), want in zip(
        jax.tree_util.tree_leaves_with_path(restored), jax.tree_util.tree_leaves(target)
    ):
        if np.shape(got) != np.shape(want) or np.asarray(got).dtype != want.dtype:
            raise ValueError(
                f"{what} does not match the expected state: {jax.tree_util.keystr(path)} has "
                f"shape {np.shape(got)} and dtype "
                f"{np.asarray(got).dtype}; expected {np.shape(want)} {want.dtype}."
            )
