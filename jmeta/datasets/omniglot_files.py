"""Omniglot release files: finding, downloading, reading and decoding them.

The release (Lake et al., 2015) ships four zips, each holding
``<stem>/<Alphabet>/characterNN/<id>_<drawer>.png``: 105x105 black-on-white
PNGs, one per drawer (20 per character). Either the zip or its extracted folder
(``<data_dir>/<stem>/...``) can be read; the zip wins when both exist. A zip
must be the release's file: its checksum is compared with ``KNOWN_DIGESTS``
whenever it is decoded (that is, once per zip and image size: later loads read
the cache, whose key holds the zip's sha256). An extracted folder has no known
checksum and is read as it is. PNG file names are matched case-insensitively
(``.png`` or ``.PNG``) in both.

Decoded images are stored with ink high: ``255 - grey``, so background is 0
and a fully inked pixel 255 (after resizing, partly inked pixels lie between).
Class names are ``"<Alphabet>/characterNN"``. Alphabets, characters and
drawers are sorted in natural order (``character2`` before ``character10``).
"""

from __future__ import annotations

import functools
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from jmeta.datasets.base import FewShotSplit, stack_classes
from jmeta.datasets.cache import cache_root, cached_split, fingerprint_folder, hash_file
from jmeta.datasets.download import download_file
from jmeta.datasets.images import decode_images

DATA_ENV = "JMETA_OMNIGLOT_DIR"
RELEASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/{stem}.zip"

#: Source split name -> file stem of the release zip.
STEMS = {
    "background": "images_background",
    "evaluation": "images_evaluation",
    "small1": "images_background_small1",
    "small2": "images_background_small2",
}

#: Known digests of the release zips, ``stem -> (hashlib algorithm, hex digest)``.
#: The sha256 of the two small zips were computed from the files themselves; for
#: the two full zips we know the md5 that torchvision's ``Omniglot`` data set
#: checks (the same values appear in many other public loaders), not a sha256.
KNOWN_DIGESTS: dict[str, tuple[str, str]] = {
    "images_background": ("md5", "68d2efa1b9178cc56df9314c21c6e718"),
    "images_evaluation": ("md5", "6b91aef0f799c5bb55b94e3f2daec811"),
    "images_background_small1": (
        "sha256",
        "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
    ),
    "images_background_small2": (
        "sha256",
        "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
    ),
}


def omniglot_dir(
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Where the release files are: ``data_dir``, ``$JMETA_OMNIGLOT_DIR``, or
    ``<cache root>/omniglot`` (where ``download=True`` puts them)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return cache_root(cache_dir) / "omniglot"


def find_source(data_dir: Path, stem: str) -> Path:
    """The zip ``<stem>.zip`` in ``data_dir``, else the folder ``<stem>/``.

    Raises:
      FileNotFoundError: neither exists; the message lists what was found.
    """
    for candidate in (data_dir / f"{stem}.zip", data_dir / stem):
        if candidate.exists():
            return candidate
    found = sorted(p.name for p in data_dir.iterdir())[:10] if data_dir.is_dir() else None
    where = f"found {found or 'an empty folder'}" if found is not None else "the folder is missing"
    raise FileNotFoundError(
        f"expected {stem}.zip or the folder {stem}/ in {data_dir}; {where}. "
        f"Pass data_dir, set ${DATA_ENV}, or use download=True"
    )


def _natural_key(text: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def _drawer_key(file_name: str) -> tuple:
    stem = file_name.rsplit(".", 1)[0]
    drawer = stem.rsplit("_", 1)[-1]
    return (int(drawer) if drawer.isdigit() else -1, _natural_key(file_name))


def _is_png(parts: tuple[str, ...]) -> bool:
    """A PNG (any case of ``.png``) outside macOS metadata folders."""
    return parts[-1].lower().endswith(".png") and "__MACOSX" not in parts


def _entries(path: Path) -> Iterator[tuple[tuple[str, ...], bytes | Path]]:
    """Yields ``(path parts, reader)`` for every PNG in a zip or folder."""
    if path.is_dir():
        for file in path.rglob("*"):
            parts = file.relative_to(path).parts
            if _is_png(parts) and file.is_file():
                yield parts, file
        return
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"expected a zip archive at {path}; could not open it: {err}") from err
    with archive:
        for info in archive.infolist():
            name = info.filename
            if info.is_dir() or not _is_png(tuple(name.split("/"))):
                continue
            try:
                data = archive.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError) as err:
                raise ValueError(f"corrupt zip {path}: cannot read {name}: {err}") from err
            yield tuple(name.split("/")), data


def read_source(path: Path) -> dict[str, list[tuple[str, bytes | Path]]]:
    """Class name -> ``(file name, bytes or path)`` per drawer, all sorted.

    Raises:
      ValueError: an unreadable zip, or no PNG in the expected layout.
    """
    groups: dict[str, list[tuple[str, bytes | Path]]] = {}
    for parts, data in _entries(path):
        if len(parts) < 3:
            continue
        alphabet, character, file_name = parts[-3:]
        groups.setdefault(f"{alphabet}/{character}", []).append((file_name, data))
    if not groups:
        raise ValueError(
            f"expected PNG files at <Alphabet>/characterNN/<id>_<drawer>.png in {path}; found none"
        )
    ordered = {}
    for name in sorted(groups, key=lambda n: tuple(map(_natural_key, n.split("/")))):
        ordered[name] = sorted(groups[name], key=lambda item: _drawer_key(item[0]))
    return ordered


def decode_source(path: Path, image_size: int | None, num_workers: int = 0) -> FewShotSplit:
    """Decodes every character of a release zip or folder, ink high.

    Raises:
      ValueError: unreadable files or characters with different drawer counts.
    """
    groups = read_source(path)
    items = [
        (f"{path}:{cls}/{fname}", data) for cls, files in groups.items() for fname, data in files
    ]
    arrays = decode_images(items, size=image_size, channels=1, num_workers=num_workers)
    per_class, start = {}, 0
    for cls, files in groups.items():
        per_class[cls] = arrays[start : start + len(files)]
        start += len(files)
    split = stack_classes(per_class, source=str(path))
    return FewShotSplit(np.subtract(255, split.images, dtype=np.uint8), split.class_names)


def release_mismatch(path: Path, stem: str, found: dict[str, str] | None = None) -> str:
    """``""`` if the file at ``path`` has the known digest of ``<stem>.zip``
    (or none is known), else ``"expected <algorithm> <digest>, found <digest>"``.

    ``found`` holds digests already computed (``{"sha256": ...}``); they are
    reused when they include the algorithm needed.
    """
    if stem not in KNOWN_DIGESTS:
        return ""
    algorithm, expected = KNOWN_DIGESTS[stem]
    digest = (found or {}).get(algorithm) or hash_file(path, algorithm)[algorithm]
    return "" if digest == expected else f"expected {algorithm} {expected}, found {digest}"


def check_release_zip(path: Path, stem: str, found: dict[str, str] | None = None) -> None:
    """Raises unless the zip at ``path`` is the release's ``<stem>.zip``.

    Raises:
      ValueError: its digest differs from ``KNOWN_DIGESTS``; the message names
        the path and the expected and found digests.
    """
    mismatch = release_mismatch(path, stem, found)
    if mismatch:
        raise ValueError(
            f"{path} is not the Omniglot release's {stem}.zip: {mismatch}. Replace it with "
            f"{RELEASE_URL.format(stem=stem)} (or delete it and pass download=True); to use "
            f"other images on purpose, extract them into a folder {stem}/ instead"
        )


def _validate_zip(stem: str):
    def validate(path: Path) -> None:
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                names = archive.namelist()
        except zipfile.BadZipFile as err:
            raise ValueError(f"download of {stem}.zip is not a zip archive: {err}") from err
        if bad is not None:
            raise ValueError(f"download of {stem}.zip is corrupt (first bad entry {bad})")
        if not any(n.startswith(f"{stem}/") and n.lower().endswith(".png") for n in names):
            raise ValueError(f"download of {stem}.zip holds no PNG under {stem}/")
        mismatch = release_mismatch(path, stem)
        if mismatch:
            raise ValueError(f"download of {stem}.zip is not the release's file: {mismatch}")

    return validate


def fetch_release(stem: str, data_dir: Path) -> Path:
    """Downloads ``<stem>.zip`` of the public release into ``data_dir``.

    Opened and tested as a zip, then checked against ``KNOWN_DIGESTS``;
    written atomically (nothing appears at the destination unless it passes).
    """
    return download_file(
        RELEASE_URL.format(stem=stem), data_dir / f"{stem}.zip", validate=_validate_zip(stem)
    )


def load_source(
    source: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    image_size: int | None = 28,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    num_workers: int = 0,
) -> FewShotSplit:
    """One release file (``"background"``, ``"evaluation"``, ``"small1"``,
    ``"small2"``) decoded, through the cache.

    The cache key holds the sha256 of the zip (or of the folder's files), the
    image size and the cache format version. A zip is checked against
    ``KNOWN_DIGESTS`` before it is decoded (so once per cache entry).

    Raises:
      ValueError: a zip that is not the release's file, or unreadable files.
      FileNotFoundError: neither the zip nor the folder is in the data folder.
    """
    if source not in STEMS:
        raise ValueError(f"expected an Omniglot source in {sorted(STEMS)}; got {source!r}")
    stem = STEMS[source]
    root = omniglot_dir(data_dir, cache_dir)
    if download and not (root / f"{stem}.zip").exists() and not (root / stem).exists():
        fetch_release(stem, root)
    path = find_source(root, stem)
    decode: Callable[[], FewShotSplit]
    if path.is_dir():
        checksum = fingerprint_folder(path, content=True)
        decode = functools.partial(decode_source, path, image_size, num_workers)
    else:
        found = hash_file(path, "sha256")
        checksum = found["sha256"]

        def decode() -> FewShotSplit:
            check_release_zip(path, stem, found)
            return decode_source(path, image_size, num_workers)

    size = f"{image_size}px" if image_size else "native"
    return cached_split(cache_dir, f"omniglot-{stem}-{checksum[:16]}-{size}", decode)
