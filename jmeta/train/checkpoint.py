"""Checkpoints of a :class:`~jmeta.MetaTrainState`: atomic, checksummed, saying what made them.

Layout of one checkpoint::

    checkpoints/<step>/state/            the arrays (an orbax-checkpoint PyTree)
    checkpoints/<step>/checkpoint.json   {"format": 1, "step": ..., "made_by": {...},
                                          "files": {path: sha256 of every file of state/}}

A save writes everything into the hidden folder ``checkpoints/.<step>.partial``,
hashes every file, writes ``checkpoint.json`` last and renames the folder into
place, so a process killed at any moment leaves the earlier checkpoints intact
and never a half-written one under a step's name. A complete checkpoint is
never modified, only deleted (the oldest beyond ``keep``, renamed away first).

Restoring checks every file against its recorded checksum. Without a step
named, a damaged or incomplete checkpoint (a flipped bit, a deleted file, a
torn copy) is reported with a :class:`CheckpointWarning` and the newest intact
one is restored instead; a named one that is damaged raises
:class:`CheckpointDamaged`. ``made_by`` (the algorithm and the config fields
that define the parameters) is stored with each checkpoint, and a restore that
``expect``\\ s other values is refused by name.

Restoring reads every array to host memory first and then places it, so a
state saved from any number of devices (sharded or replicated) restores onto
any other: one device by default, or the shardings the caller gives.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jmeta.train.lock import WriteError, os_error_code

MANIFEST = "checkpoint.json"
STATE = "state"
FORMAT = 1


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped for an older, intact one."""


class CheckpointDamaged(ValueError):
    """A checkpoint's files are missing or differ from their checksums."""


class CheckpointMismatch(ValueError):
    """A checkpoint was made by another algorithm or configuration than expected."""


class Checkpoints:
    """The checkpoints of one run: ``<directory>/<step>/``.

    Args:
      directory: the folder holding the numbered checkpoints (created by the
        first save; reading never writes).
      keep: how many of the most recent to keep.

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> from jmeta.train import Checkpoints
      >>> ckpts = Checkpoints(tempfile.mkdtemp(), keep=3)
      >>> ckpts.save(100, {"w": jnp.ones(2)}, made_by={"algorithm": "maml"})
      >>> ckpts.steps()
      [100]
      >>> ckpts.restore(like={"w": jnp.zeros(2)})["w"]
      Array([1., 1.], dtype=float32)
    """

    def __init__(self, directory: str | Path, *, keep: int = 3):
        self.directory = Path(directory).absolute()
        self.keep = keep

    def steps(self) -> list[int]:
        """The steps of the checkpoints present (intact or not), oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(int(p.name) for p in self.directory.iterdir() if _is_step(p))

    def latest(self) -> int | None:
        """The newest checkpoint's step, or ``None``."""
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any, *, made_by: Mapping[str, Any] | None = None) -> None:
        """Write ``state`` as checkpoint ``step`` (blocking; atomic); keep the newest ``keep``.

        Raises:
          WriteError: the checkpoint could not be written (read-only folder,
            full disk, ...); the earlier checkpoints are untouched.
        """

        step = int(step)
        tmp = self.directory / f".{step}.partial"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._clean()
            tmp.mkdir()
            with _quiet_orbax():
                if jax.process_count() > 1:  # process 0 alone writes the host copy
                    state = jax.device_get(state)
                _checkpointer().save(tmp / STATE, state)
            files = {
                p.relative_to(tmp).as_posix(): _sha256(p)
                for p in sorted((tmp / STATE).rglob("*"))
                if p.is_file()
            }
            manifest = {"format": FORMAT, "step": step, "made_by": dict(made_by or {}),
                        "files": files}  # fmt: skip
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
            final = self.directory / str(step)
            if final.exists():  # an older run's (or a damaged) checkpoint of this step
                self._remove(final)
            os.replace(tmp, final)
        except Exception as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if not isinstance(err, OSError) and os_error_code(str(err)) is None:
                raise  # not a disk fault (tensorstore reports those with their errno)
            raise WriteError(f"checkpoint {step} in {self.directory}", err) from None
        for old in self.steps()[: -self.keep]:
            self._remove(self.directory / str(old))

    def delete(self, step: int) -> None:
        """Delete checkpoint ``step`` (renamed away first, so never left half-deleted)."""
        self._remove(self.directory / str(int(step)))

    def verify(self, step: int) -> str | None:
        """``None`` if checkpoint ``step`` is intact, else what is wrong with it."""
        folder = self.directory / str(int(step))
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            files = manifest["files"]
        except FileNotFoundError:
            return f"{MANIFEST} is missing (an incomplete or foreign checkpoint)"
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f"{MANIFEST} is unreadable ({type(err).__name__})"
        if manifest.get("format") != FORMAT or manifest.get("step") != int(step):
            found = f"format {manifest.get('format')}, step {manifest.get('step')}"
            return f"{MANIFEST} describes {found}"
        missing = [name for name in files if not (folder / name).is_file()]
        if missing:
            return f"{len(missing)} file(s) missing: {', '.join(missing[:3])}"
        changed = [name for name, digest in files.items() if _sha256(folder / name) != digest]
        if changed:
            return f"{len(changed)} file(s) differ from their checksums: {', '.join(changed[:3])}"
        return None

    def made_by(self, step: int) -> dict[str, Any]:
        """What made checkpoint ``step`` (the ``made_by`` given to :meth:`save`)."""
        manifest = json.loads((self.directory / str(int(step)) / MANIFEST).read_text())
        return manifest["made_by"]

    def newest_intact(self) -> tuple[int | None, list[tuple[int, str]]]:
        """``(step, damaged)``: the newest intact checkpoint (``None`` if none) and the
        ``(step, problem)`` of each newer one that is damaged."""
        damaged: list[tuple[int, str]] = []
        for step in reversed(self.steps()):
            problem = self.verify(step)
            if problem is None:
                return step, damaged
            damaged.append((step, problem))
        return None, damaged

    def restore(
        self,
        like: Any,
        step: int | None = None,
        sharding: Any = None,
        *,
        expect: Mapping[str, Any] | None = None,
    ) -> Any:
        """Read checkpoint ``step`` (default: the newest intact) into the structure of ``like``.

        Args:
          like: a pytree with the saved structure, shapes and dtypes (e.g. a
            freshly initialised state; its values are not used).
          step: which checkpoint; ``None`` for the newest intact one (damaged
            newer ones are skipped with a :class:`CheckpointWarning`).
          sharding: where to place the arrays: ``None`` for the default
            device, or a ``jax.sharding.Sharding`` (or a pytree of them
            matching ``like``) for several devices.
          expect: ``made_by`` entries the checkpoint must have (e.g. the
            algorithm); any other value is refused.

        Raises:
          FileNotFoundError: there is no such checkpoint (or none at all).
          CheckpointDamaged: the checkpoint (``step`` given), or every one
            (``step=None``), is damaged.
          CheckpointMismatch: ``expect`` differs from what made the checkpoint.
          ValueError: the checkpoint does not match ``like``.
        """
        for _ in range(3):  # a live run may delete a checkpoint while it is read
            chosen = self._choose(step)
            try:
                return self._restore(chosen, like, sharding, expect)
            except _Vanished:
                if step is not None:
                    raise FileNotFoundError(
                        f"checkpoint {step} in {self.directory} was deleted while it was read "
                        f"(the run writing it keeps only its newest {self.keep})."
                    ) from None
        raise FileNotFoundError(f"the checkpoints in {self.directory} kept vanishing while read.")

    def _choose(self, step: int | None) -> int:
        where = f"in {self.directory}"
        if step is not None:
            step = int(step)
            if step not in self.steps():
                raise FileNotFoundError(
                    f"no checkpoint for step {step} {where} (found steps {self.steps()})."
                )
            problem = self.verify(step)
            if problem is not None:
                intact = [s for s in self.steps() if s != step and self.verify(s) is None]
                raise CheckpointDamaged(
                    f"checkpoint {step} {where} is damaged: {problem}. Intact checkpoints: "
                    f"{intact or 'none'}."
                )
            return step
        if not self.steps():
            raise FileNotFoundError(f"no checkpoint {where}.")
        newest, damaged = self.newest_intact()
        if newest is None:
            raise CheckpointDamaged(
                f"no intact checkpoint {where}: "
                + "; ".join(f"checkpoint {s} is damaged: {p}" for s, p in damaged)
                + "."
            )
        for bad, problem in damaged:
            warnings.warn(
                f"checkpoint {bad} {where} is damaged ({problem}); using checkpoint {newest}, "
                "the newest intact one.",
                CheckpointWarning,
                stacklevel=4,
            )
        return newest

    def _restore(self, step: int, like: Any, sharding: Any, expect) -> Any:
        import orbax.checkpoint as ocp

        what = f"checkpoint {step} in {self.directory}"
        folder = self.directory / str(step)
        if expect:
            _check_made_by(self.made_by(step), expect, what)
        target = jax.tree.map(lambda x: np.zeros(np.shape(x), x.dtype), like)
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
        try:
            with _quiet_orbax():
                host = _checkpointer().restore(
                    folder / STATE,
                    args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args),
                )
        except (ValueError, KeyError, TypeError, FileNotFoundError) as err:
            if not folder.exists():
                raise _Vanished from None
            raise ValueError(f"{what} does not match the expected state: {err}") from err
        _check_like(host, target, what)
        return jax.device_put(host, sharding)

    def _clean(self) -> None:
        """Remove what killed saves and deletions left (hidden ``.*.partial``/``.*.deleting``)."""
        for p in self.directory.iterdir():
            if p.name.startswith(".") and p.name.endswith((".partial", ".deleting")):
                shutil.rmtree(p, ignore_errors=True)

    def _remove(self, folder: Path) -> None:
        trash = folder.with_name(f".{folder.name}.deleting")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(folder, trash)
        shutil.rmtree(trash)

    def close(self) -> None:
        """Nothing to release (kept for ``with`` blocks)."""

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Vanished(Exception):
    """The checkpoint being read was deleted meanwhile."""


def _is_step(path: Path) -> bool:
    return path.name.isdigit() and path.is_dir()


def is_checkpoint_entry(path: Path) -> bool:
    """Whether ``path`` in a checkpoints folder is one jmeta writes (a step, or a temporary)."""
    name = path.name
    temporary = name.startswith(".") and name.endswith((".partial", ".deleting"))
    return path.is_dir() and (name.isdigit() or temporary)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_made_by(made_by: Mapping[str, Any], expect: Mapping[str, Any], what: str) -> None:
    differ = [
        f"{name}={made_by[name]!r} there, {value!r} here"
        for name, value in expect.items()
        if name in made_by and _comparable(made_by[name]) != _comparable(value)
    ]
    if differ:
        raise CheckpointMismatch(
            f"{what} was made by another configuration: {'; '.join(differ)}. It was copied "
            "from another run, or the run's config.json was edited."
        )


def _comparable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _checkpointer():
    """Orbax's PyTree checkpointer; with several processes, one that acts in this process alone.

    A run of several processes saves from process 0 only (the host copy of the
    replicated state) and every process restores on its own, so neither may
    wait for the others at orbax's barriers.
    """
    import orbax.checkpoint as ocp

    if jax.process_count() == 1:
        return ocp.PyTreeCheckpointer()
    me = jax.process_index()
    options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    handler = ocp.PyTreeCheckpointHandler(multiprocessing_options=options)
    return ocp.Checkpointer(handler, multiprocessing_options=options)


@contextlib.contextmanager
def _quiet_orbax():
    """Orbax logs a failed write with a traceback from its worker thread; the error is ours
    to report (once, in one line), so its logger is silenced for the call."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_like(restored: Any, target: Any, what: str) -> None:
    for (path, got), want in zip(
        jax.tree_util.tree_leaves_with_path(restored),
        jax.tree_util.tree_leaves(target),
        strict=True,
    ):
        if np.shape(got) != np.shape(want) or np.asarray(got).dtype != want.dtype:
            raise ValueError(
                f"{what} does not match the expected state: {jax.tree_util.keystr(path)} has "
                f"shape {np.shape(got)} and dtype "
                f"{np.asarray(got).dtype}; expected {np.shape(want)} {want.dtype}."
            )
