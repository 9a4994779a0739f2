"""One writer per run folder: an OS file lock, and the error a second writer gets.

A run folder is written by one process at a time. The writer holds an
exclusive ``fcntl.flock`` on ``<run>/.jmeta-lock`` for the whole run; the
kernel releases it when the process ends, however it ends (``SIGKILL``
included), so the lock can never go stale. The file also holds who took it
(PID, host, since when), which is what a refused second writer is told. A
reader (``jmeta eval``) takes no lock: it reads ``config.json`` (replaced
atomically) and complete checkpoints, which the writer never modifies, only
deletes (see :mod:`jmeta.train.checkpoint`).

``flock`` locks are per open file, so a second ``train`` call in the same
process is refused too. On network file systems ``flock`` works where the
kernel maps it to a lock the server knows (NFSv4 on Linux does).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

LOCK = ".jmeta-lock"


class RunFolderBusy(RuntimeError):
    """Another process is writing the run folder (it holds the folder's lock)."""


class WriteError(OSError):
    """A file or folder of a run could not be written (read-only folder, full disk, ...).

    ``str()`` is one line: ``cannot write <what>: <reason>``.
    """

    def __init__(self, what: str | Path, err: BaseException):
        code = getattr(err, "errno", None) or os_error_code(str(err))
        reason = getattr(err, "strerror", None) or (os.strerror(code) if code else None)
        super().__init__(code, reason or str(err).strip().splitlines()[0])
        self.what = str(what)

    def __str__(self) -> str:
        return f"cannot write {self.what}: {self.strerror}"


def os_error_code(message: str) -> int | None:
    """The errno in a tensorstore message (``... [os_error_code='28']``), if any."""
    marker = "os_error_code='"
    if marker in message:
        digits = message.split(marker, 1)[1].split("'", 1)[0]
        if digits.isdigit():
            return int(digits)
    return None


class RunLock:
    """The exclusive lock on a run folder, held until :meth:`release` or the process ends.

    Example:
      >>> import tempfile
      >>> from jmeta.train.lock import RunLock
      >>> lock = RunLock.acquire(tempfile.mkdtemp())  # then write the run
      >>> lock.release()
    """

    def __init__(self, folder: Path, fd: int):
        self.folder = folder
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, folder: str | Path) -> RunLock:
        """Create ``folder`` if needed and lock it; never waits.

        Raises:
          RunFolderBusy: another process holds the lock (the message says which).
          WriteError: the folder or its lock file cannot be created.
        """
        import fcntl

        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise WriteError(f"in {folder}", err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _holder(fd)
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WriteError(f"the lock {folder / LOCK}", err) from None
            raise RunFolderBusy(
                f"{folder} is being written by another jmeta process ({holder}); a run folder "
                "has one writer at a time. Wait for that run to end, or stop it, then retry; "
                "`jmeta eval` can read the run meanwhile."
            ) from None
        who = {"pid": os.getpid(), "host": socket.gethostname(),
               "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}  # fmt: skip
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(who).encode(), 0)
        except OSError as err:
            os.close(fd)
            raise WriteError(folder / LOCK, err) from None
        return cls(folder, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    __del__ = release  # a lock dropped without release() is released with it


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it: ``PID 12 on host h, since ...``."""
    try:
        who = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"PID {who['pid']} on host {who['host']}, since {who['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "it has not yet said which"
