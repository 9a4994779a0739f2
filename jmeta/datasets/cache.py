"""The on-disk cache of decoded data sets: checksums, atomic writes, reloads.

Decoding thousands of small images costs seconds; reloading one compressed
``.npz`` costs milliseconds. A cache entry's file name carries everything its
content depends on (a checksum of the source and the decode options), so a
changed source or option never reads a stale entry, and entries never need
invalidating. Writes go to a temporary file in the same folder, then
``os.replace`` moves it into place: a crash or a failed decode leaves either the
old entry or none, never half a file.

Cache folder: the ``cache_dir`` argument, else the ``JMETA_CACHE`` environment
variable, else ``$XDG_CACHE_HOME/jmeta``, else ``~/.cache/jmeta``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jmeta.datasets.base import FewShotSplit, check_split

CACHE_ENV = "JMETA_CACHE"
CACHE_FORMAT = 1  # bump when the stored layout or decoding changes
_CHUNK = 1 << 20


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: argument, ``$JMETA_CACHE``, XDG cache, ``~/.cache/jmeta``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "jmeta"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_folder(path: str | os.PathLike[str], *, content: bool = True) -> str:
    """Hex sha256 over a folder's files, independent of listing order.

    Args:
      path: the folder.
      content: hash each file's relative path and bytes (exact); with
        ``False``, its relative path, size and modification time only (cheap
        for folders of gigabytes, and still changes when a file is replaced).

    Returns:
      The hex digest.
    """
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\0")
        if content:
            digest.update(sha256_file(file).encode())
        else:
            st = file.stat()
            digest.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Calls ``write(tmp)`` on a temporary file next to ``path``, then renames it.

    If ``write`` raises, the temporary file is removed and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_split(path: Path, split: FewShotSplit) -> Path:
    """Writes ``split`` as a compressed ``.npz`` at ``path``, atomically."""
    check_split(split)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f, images=split.images, class_names=np.asarray(split.class_names, dtype=str)
            )

    return atomic_write(path, write)


def load_split(path: Path) -> FewShotSplit | None:
    """Reads a cache entry; ``None`` if it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            split = FewShotSplit(data["images"], tuple(str(n) for n in data["class_names"]))
        return check_split(split)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        return None


def cached_split(
    cache_dir: str | os.PathLike[str] | None,
    key: str,
    build: Callable[[], FewShotSplit],
) -> FewShotSplit:
    """Returns the cache entry ``key``, building and storing it on a miss.

    An unreadable entry counts as a miss and is overwritten. ``build`` runs
    before anything is written, so if it raises no entry appears.

    Args:
      cache_dir: see ``cache_root``.
      key: the entry's file name without ``.npz``; it must encode every input
        the content depends on.
      build: makes the split on a miss.

    Returns:
      The split.
    """
    path = cache_root(cache_dir) / f"{key}-v{CACHE_FORMAT}.npz"
    if path.is_file():
        split = load_split(path)
        if split is not None:
            return split
    split = build()
    save_split(path, split)
    return split
