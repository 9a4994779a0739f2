"""The output folder of a run: what jmeta writes there, and the rules that protect it.

``<output_dir>/`` holds ``jmeta-run.json`` (the marker: this folder holds a
jmeta run; its format, the run's record of resumes and divergence, and how an
image file becomes one of its examples),
``config.json`` (the resolved configuration), ``metrics.jsonl``,
``checkpoints/<step>/``, ``results.json`` (the test scores), ``timings.json``,
``curves.png``, ``tensorboard/`` (if ``tensorboardX`` is installed) and
``.jmeta-lock`` (the writer's lock, :mod:`jmeta.train.lock`).

The rules: one writer at a time (the lock); a folder that holds a run is
written into only with ``resume`` or ``overwrite``; ``overwrite`` deletes only
what jmeta wrote, in folders it marked, and only once everything has been
checked and the new run has started; files of anyone else are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from jmeta.datasets.conversion import ImageConversion
from jmeta.train.best import BEST
from jmeta.train.checkpoint import is_checkpoint_entry
from jmeta.train.config import TrainConfig, config_from_dict, resolve_config
from jmeta.train.lock import LOCK, RunLock
from jmeta.train.logs import write_json

MARKER = "jmeta-run.json"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
RESULTS = "results.json"
TIMINGS = "timings.json"
CURVES = "curves.png"
TENSORBOARD = "tensorboard"
#: Where ``overwrite`` keeps the replaced run until the new one has started.
REPLACED = ".jmeta-replaced"
#: The version of the run-folder layout that this jmeta writes and reads.
FORMAT = 1

_FILES = (MARKER, CONFIG, METRICS, RESULTS, TIMINGS, CURVES)
#: jmeta's folders, and which of their entries it writes.
_FOLDERS = {
    CHECKPOINTS: is_checkpoint_entry,
    BEST: is_checkpoint_entry,
    TENSORBOARD: lambda path: path.name.startswith("events.out.tfevents."),
}


def default_output_dir(config: TrainConfig) -> Path:
    """``runs/<dataset>-<algorithm>-<YYYYmmdd-HHMMSS>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.dataset.replace(':', '-')}-{config.algorithm}-{stamp}"


def saved_config(output_dir: str | Path) -> TrainConfig:
    """The resolved configuration a run saved in ``output_dir``."""
    path = Path(output_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(_no_run(Path(output_dir)))
    return resolve_config(config_from_dict(json.loads(path.read_text())))


def _no_run(folder: Path) -> str:
    if (folder / MARKER).is_file():  # marked, then stopped before its config was written
        return (
            f"{folder} holds no run: {CONFIG} not found (the run was stopped before it had "
            "started; start it again with --overwrite)."
        )
    return f"{folder} holds no run: {CONFIG} not found."


def read_record(folder: str | Path) -> dict[str, Any] | None:
    """The run record in ``folder``'s marker, or ``None`` if the folder has no marker.

    Raises:
      ValueError: the marker is unreadable or of a format this jmeta does not know.
    """
    path = Path(folder) / MARKER
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is unreadable ({err}); is this a jmeta run?") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise ValueError(
            f"{path} is a run folder of format {found!r}; this jmeta reads format {FORMAT}."
        )
    return record


def jmeta_entries(folder: Path) -> list[Path]:
    """The files and folders in ``folder`` that jmeta writes (nothing of anyone else's)."""
    found = [folder / name for name in _FILES if (folder / name).is_file()]
    for name, ours in _FOLDERS.items():
        if (folder / name).is_dir():
            found += [p for p in sorted((folder / name).iterdir()) if ours(p)]
    return found


def _run_like(folder: Path) -> list[str]:
    """Names of run files present in ``folder``, for messages (``checkpoints/`` for the folder)."""
    names = [name for name in _FILES if (folder / name).exists()]
    return names + [f"{name}/" for name in _FOLDERS if (folder / name).exists()]


class RunFolder:
    """An output folder locked by this process for one run.

    :meth:`open` takes the lock and checks that the folder can take the run
    (writing nothing else); :meth:`start` writes the marker and
    ``config.json`` (moving a replaced run aside); :meth:`started` deletes the
    replaced run once the new one has taken its first steps; :meth:`abandon`
    undoes :meth:`start` if the run fails before that; :meth:`close` releases
    the lock.
    """

    def __init__(
        self, path: Path, lock: RunLock, record: dict[str, Any] | None, mode: str, created: bool
    ):
        self.path = path
        self.lock = lock
        self.record = record
        self.mode = mode  # "new", "overwrite" or "resume"
        self._created = created  # this process made the folder
        self._wrote = False
        self._started = False

    @classmethod
    def open(cls, path: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunFolder:
        """Lock ``path`` (creating it if needed) and check it can take the run.

        Raises:
          ValueError: both ``resume`` and ``overwrite``.
          RunFolderBusy: another process is writing the folder.
          FileExistsError: it holds a run and neither flag is set, or it holds
            run-like files that jmeta did not write (never deleted).
          FileNotFoundError: ``resume`` without a run to resume.
          WriteError: the folder cannot be written.
        """
        if resume and overwrite:
            raise ValueError("--resume and --overwrite contradict each other; pass one.")
        path = Path(path)
        existed = path.exists()
        lock = RunLock.acquire(path)
        try:
            record = read_record(path)
            present = _run_like(path)
            if record is None and present:
                raise FileExistsError(
                    f"{path} holds {', '.join(present)} but no {MARKER}: these were not written "
                    f"by this jmeta (or by one older than the {MARKER} marker), and jmeta never "
                    "deletes or continues what it did not write. Move them away or choose "
                    "another --output-dir."
                )
            if resume:
                if record is None or not (path / CONFIG).is_file():
                    raise FileNotFoundError(_no_run(path))
                mode = "resume"
            elif record is not None:
                if not overwrite:
                    raise FileExistsError(
                        f"{path} already holds a run ({', '.join(present)}). Pass --resume to "
                        "continue it, --overwrite to replace it, or choose another --output-dir."
                    )
                mode = "overwrite"
            else:
                mode = "new"
        except BaseException:
            lock.release()
            if not existed:
                _remove_created(path)
            raise
        return cls(path, lock, record, mode, created=not existed)

    def saved_config(self) -> TrainConfig:
        return saved_config(self.path)

    def start(
        self,
        config: TrainConfig,
        *,
        resumed: dict[str, Any] | None = None,
        images: ImageConversion | None = None,
    ) -> None:
        """Write the marker and ``config.json`` (after moving a replaced run aside).

        ``resumed`` (resume only) is appended to the record's ``resumes``;
        ``images`` (image data) is how an image file becomes an example, the
        record's ``"images"`` (:class:`~jmeta.datasets.conversion.ImageConversion`).
        """
        try:
            if self.mode == "overwrite":
                self._move_aside()
            self._wrote = True
            if self.mode == "resume":
                resumed = resumed or {}
                # Continuing from step 0 means no checkpoint is left to continue from.
                record = dict(self.record or {}, diverged=None,
                              checkpointed=resumed.get("from_step", 0) > 0)  # fmt: skip
                record["resumes"] = [*record.get("resumes", []), resumed]
            else:
                self.record = None  # a replaced run's record goes with it
                record = {"format": FORMAT, "jmeta": _version(), "checkpointed": False,
                          "diverged": None, "resumes": []}  # fmt: skip
            if images is not None:
                record["images"] = images.to_dict()
            self.update(**record)
            write_json(self.path / CONFIG, config.to_dict())
        except BaseException:
            self.abandon()
            raise

    def update(self, **fields: Any) -> None:
        """Change fields of the run record (rewritten atomically)."""
        self.record = {**(self.record or {}), **fields}
        write_json(self.path / MARKER, self.record)

    def started(self) -> None:
        """The run has taken its first steps: delete the run it replaced, if any."""
        if not self._started:
            self._started = True
            shutil.rmtree(self.path / REPLACED, ignore_errors=True)

    def abandon(self) -> None:
        """Undo :meth:`start` after an error before the run started: remove the new run's
        files and put a replaced run back (a resumed run keeps its folder as it is)."""
        if self._started or self.mode == "resume":
            return
        if self._wrote:
            for entry in jmeta_entries(self.path):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            self._wrote = False
        aside = self.path / REPLACED
        if self.mode == "overwrite" and aside.is_dir():
            for entry in jmeta_entries(aside):
                target = self.path / entry.relative_to(aside)
                target.parent.mkdir(exist_ok=True)
                os.replace(entry, target)
            shutil.rmtree(aside, ignore_errors=True)

    def close(self) -> None:
        """Release the lock; a new run's folder that failed before writing anything goes."""
        self.lock.release()
        if self._created and not self._wrote:
            _remove_created(self.path)

    def _move_aside(self) -> None:
        """Move every file jmeta wrote into ``.jmeta-replaced/`` (renames: same disk)."""
        aside = self.path / REPLACED
        shutil.rmtree(aside, ignore_errors=True)  # left by a replacement that was killed
        aside.mkdir()
        for entry in jmeta_entries(self.path):
            target = aside / entry.relative_to(self.path)
            target.parent.mkdir(exist_ok=True)
            os.replace(entry, target)


def _remove_created(path: Path) -> None:
    """Remove a folder this process created, if it holds nothing but the lock file."""
    try:
        if [p.name for p in path.iterdir()] in ([], [LOCK]):
            shutil.rmtree(path)
    except OSError:
        pass


def _version() -> str:
    from jmeta import __version__

    return __version__
