"""The on-disk cache of decoded data sets: checksums, atomic writes, reloads.

Decoding thousands of small images costs seconds; reloading one compressed
``.npz`` costs milliseconds. A cache entry's file name carries everything its
content depends on (a checksum of the source and the decode options), so a
changed source or option never reads a stale entry. Inside, each entry stores
its name and a sha256 of its content (the images' bytes, shape and dtype, and
the class names in order); a reload recomputes it, so an entry that was
altered, damaged or copied under another name is rebuilt with a
``CacheWarning`` that names the file. Writes go to a temporary file in the same
folder, then ``os.replace`` moves it into place: a crash or a failed decode
leaves either the old entry or none, never half a file. A cache folder that
cannot be written (read-only, full) only costs the caching: the data are
returned, with a ``CacheWarning`` that names the folder.

Cache folder: the ``cache_dir`` argument, else the ``JMETA_CACHE`` environment
variable, else ``$XDG_CACHE_HOME/jmeta``, else ``~/.cache/jmeta``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jmeta.datasets.base import FewShotSplit, check_split

CACHE_ENV = "JMETA_CACHE"
CACHE_FORMAT = 2  # bump when the stored layout or decoding changes (2: content checksum)
_CHUNK = 1 << 20


class CacheWarning(UserWarning):
    """The cache could not be used as it is: an entry was rebuilt, or not written."""


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
    return hash_file(path, "sha256")["sha256"]


def hash_file(path: str | os.PathLike[str], *algorithms: str) -> dict[str, str]:
    """Hex digests of a file's bytes, one ``hashlib`` algorithm each, in one read.

    Example:
      >>> import pathlib, tempfile
      >>> from jmeta.datasets.cache import hash_file
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "hello.txt"
      >>> path.write_bytes(b"hello")
      5
      >>> hash_file(path, "md5")
      {'md5': '5d41402abc4b2a76b9719d911017c592'}
    """
    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


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


def content_sha256(split: FewShotSplit) -> str:
    """Hex sha256 of a split's content: images (shape, dtype, bytes) and class names.

    Any changed pixel, and any change to the names or their order, changes it.
    """
    images = np.ascontiguousarray(split.images)
    digest = hashlib.sha256()
    digest.update(json.dumps([images.shape, images.dtype.str, list(split.class_names)]).encode())
    digest.update(images.data.cast("B"))
    return digest.hexdigest()


def save_split(path: Path, split: FewShotSplit, *, key: str = "") -> Path:
    """Writes ``split`` as a compressed ``.npz`` at ``path``, atomically.

    The file also holds ``key`` (the entry's name) and ``content_sha256(split)``.
    """
    check_split(split)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                images=split.images,
                class_names=np.asarray(split.class_names, dtype=str),
                key=np.asarray(key),
                checksum=np.asarray(content_sha256(split)),
            )

    return atomic_write(path, write)


def load_split(path: Path, *, key: str = "") -> tuple[FewShotSplit | None, str]:
    """Reads a cache entry and checks it.

    Returns:
      ``(split, "")`` for an intact entry made for ``key``; otherwise
      ``(None, what is wrong with it)``.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            split = FewShotSplit(data["images"], tuple(str(n) for n in data["class_names"]))
            stored_key, checksum = str(data["key"]), str(data["checksum"])
        check_split(split)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        return None, f"is unreadable ({type(err).__name__}: {err})"
    if stored_key != key:
        return None, f"was made for another entry ({stored_key!r}, not {key!r})"
    if content_sha256(split) != checksum:
        return None, "does not match its stored content checksum (altered or damaged)"
    return split, ""


def cached_split(
    cache_dir: str | os.PathLike[str] | None,
    key: str,
    build: Callable[[], FewShotSplit],
) -> FewShotSplit:
    """Returns the cache entry ``key``, building and storing it on a miss.

    An entry that is unreadable, made for another key, or whose content does
    not match its stored checksum is rebuilt and replaced, with a
    ``CacheWarning`` naming the file. ``build`` runs before anything is
    written, so if it raises no entry appears. If the entry cannot be written
    (a read-only or full cache folder), the built split is returned anyway,
    with a ``CacheWarning`` naming the folder.

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
        split, problem = load_split(path, key=key)
        if split is not None:
            return split
        warnings.warn(f"cache entry {path} {problem}; rebuilding it", CacheWarning, stacklevel=2)
    split = build()
    try:
        save_split(path, split, key=key)
    except OSError as err:
        warnings.warn(
            f"could not write to the cache folder {path.parent} ({err.strerror or err}); "
            "continuing without caching. Pass cache_dir or set $JMETA_CACHE to a writable "
            "folder to cache decoded images",
            CacheWarning,
            stacklevel=2,
        )
    return split
