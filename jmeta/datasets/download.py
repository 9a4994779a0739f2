"""Fetching a release file once: atomic, checksummed, with clear offline errors.

Only ``download_file`` touches the network, through ``fetch_url``; tests
replace ``fetch_url`` and never go online.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from jmeta.datasets.cache import atomic_write, sha256_file

_TIMEOUT_S = 60


def fetch_url(url: str, dest: Path) -> None:
    """Streams ``url`` into the file ``dest`` (no checks; see ``download_file``)."""
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f)


def download_file(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    validate: Callable[[Path], None] | None = None,
) -> Path:
    """Downloads ``url`` to ``dest`` unless it is there, then checks it.

    The bytes land in a temporary file beside ``dest`` and are moved into place
    only after the checks pass, so ``dest`` is never a partial or unverified
    download. An existing ``dest`` is not fetched again (its checksum is still
    compared when ``sha256`` is given).

    Args:
      url: where to fetch from.
      dest: the file to create.
      sha256: the expected hex sha256, or ``None`` to skip the comparison.
      validate: an extra check ``(path) -> None`` that raises ``ValueError``
        on a bad file (for instance: the zip opens).

    Returns:
      ``dest`` as a ``Path``.

    Raises:
      ConnectionError: the fetch failed (offline, host unreachable, HTTP error).
      ValueError: the checksum or ``validate`` rejected the file.
      OSError: ``dest``'s folder cannot be written (read-only, full disk); the
        one-line message names the folder.
    """
    dest = Path(dest)
    if dest.is_file():
        if sha256 is not None:
            _check_sha256(dest, sha256, what=f"existing file {dest}")
        return dest

    def write(tmp: Path) -> None:
        try:
            fetch_url(url, tmp)
        except (urllib.error.URLError, OSError) as err:
            raise ConnectionError(
                f"could not download {url} to {dest}: {err}. Without internet, fetch the "
                f"file elsewhere and place it at {dest}"
            ) from err
        if sha256 is not None:
            _check_sha256(tmp, sha256, what=f"download of {url}")
        if validate is not None:
            validate(tmp)

    try:
        return atomic_write(dest, write)
    except OSError as err:
        if isinstance(err, ConnectionError):
            raise
        message = f"cannot write the download of {url} into {dest.parent}: "
        raise type(err)(message + (err.strerror or str(err))) from err


def _check_sha256(path: Path, expected: str, *, what: str) -> None:
    found = sha256_file(path)
    if found != expected.lower():
        raise ValueError(f"checksum mismatch for {what}: expected sha256 {expected}, found {found}")
