"""CIFAR-FS and FC100: few-shot splits of CIFAR-100 (32x32 colour, 600 per class).

Both read the CIFAR-100 "python version" release: a folder
``cifar-100-python/`` with the pickles ``train`` (50,000 rows), ``test``
(10,000 rows) and ``meta``, or the archive ``cifar-100-python.tar.gz``.
``data_dir`` may be that folder, its parent, or the parent of the archive.
Each class pools its 500 ``train`` rows and then its 100 ``test`` rows, in
file order. The class lists are in ``jmeta.datasets.cifar_classes``.

References:
  Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
  Bertinetto, Henriques, Torr and Vedaldi, "Meta-learning with differentiable
  closed-form solvers", ICLR 2019 (CIFAR-FS).
  Oreshkin, Rodriguez and Lacoste, "TADAM: Task dependent adaptive metric for
  improved few-shot learning", NeurIPS 2018 (FC100).
"""

from __future__ import annotations

import functools
import os
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from jmeta.datasets.base import FewShotSplit, common_count
from jmeta.datasets.cifar_classes import CIFAR100_SUPERCLASSES, CIFAR_FS_CLASSES, FC100_CLASSES
from jmeta.datasets.images import resize_images

SPLITS = ("train", "val", "test")
FOLDER = "cifar-100-python"
ARCHIVE = "cifar-100-python.tar.gz"


class Cifar100(NamedTuple):
    """CIFAR-100, both release files pooled (train rows first)."""

    images: np.ndarray  # uint8 [N, 32, 32, 3]
    fine_labels: np.ndarray  # int64 [N]
    coarse_labels: np.ndarray  # int64 [N]
    fine_names: tuple[str, ...]
    coarse_names: tuple[str, ...]


def load_cifar_fs(
    split: str, data_dir: str | os.PathLike[str], *, image_size: int | None = None
) -> FewShotSplit:
    """Loads a CIFAR-FS split (64/16/20 fine classes) as ``[C, 600, S, S, 3]``.

    Args:
      split: ``"train"``, ``"val"`` or ``"test"``.
      data_dir: see the module docstring.
      image_size: resize to ``S x S``; ``None`` keeps 32.

    Returns:
      A ``FewShotSplit``, classes in ``CIFAR_FS_CLASSES[split]`` order.

    Example:
      >>> test = load_cifar_fs("test", "~/data")  # doctest: +SKIP
      >>> test.images.shape  # doctest: +SKIP
      (20, 600, 32, 32, 3)
    """
    return _load_split(CIFAR_FS_CLASSES, "CIFAR-FS", split, data_dir, image_size)


def load_fc100(
    split: str, data_dir: str | os.PathLike[str], *, image_size: int | None = None
) -> FewShotSplit:
    """Loads an FC100 split (12/4/4 superclasses = 60/20/20 fine classes).

    Each fine class's superclass is also checked against the file's coarse
    labels.

    Args:
      split: ``"train"``, ``"val"`` or ``"test"``.
      data_dir: see the module docstring.
      image_size: resize to ``S x S``; ``None`` keeps 32.

    Returns:
      A ``FewShotSplit``, classes in ``FC100_CLASSES[split]`` order
      (superclass by superclass).
    """
    return _load_split(FC100_CLASSES, "FC100", split, data_dir, image_size)


def _load_split(
    table: dict[str, tuple[str, ...]],
    name: str,
    split: str,
    data_dir: str | os.PathLike[str],
    image_size: int | None,
) -> FewShotSplit:
    if split not in table:
        raise ValueError(f"unknown {name} split {split!r}; expected one of {list(table)}")
    data = read_cifar100(data_dir)
    classes = table[split]
    missing = [c for c in classes if c not in data.fine_names]
    if missing:
        raise ValueError(
            f"the {name} {split} classes {missing[:5]} are not in CIFAR-100's meta file"
        )
    rows = {c: np.flatnonzero(data.fine_labels == data.fine_names.index(c)) for c in classes}
    _check_superclasses(data, rows)
    k = common_count({c: len(r) for c, r in rows.items()}, None, f"CIFAR-100 in {data_dir}")
    images = data.images[np.stack([r[:k] for r in rows.values()])]
    if image_size is not None:
        images = resize_images(images, image_size)
    return FewShotSplit(images, classes)


def _check_superclasses(data: Cifar100, rows: dict[str, np.ndarray]) -> None:
    parent = {fine: sc for sc, fines in CIFAR100_SUPERCLASSES.items() for fine in fines}
    for fine, r in rows.items():
        found = {data.coarse_names[i] for i in np.unique(data.coarse_labels[r])}
        if found != {parent[fine]}:
            raise ValueError(
                f"class {fine!r} should belong to superclass {parent[fine]!r}; the file's coarse "
                f"labels give {sorted(found)}"
            )


def read_cifar100(data_dir: str | os.PathLike[str]) -> Cifar100:
    """Reads and checks the CIFAR-100 python release (folder or ``.tar.gz``).

    Raises:
      FileNotFoundError: no release in ``data_dir``.
      ValueError: a file that is not a pickle of the expected layout.
    """
    root = Path(data_dir).expanduser()
    for folder in (root / FOLDER, root):
        if (folder / "meta").is_file():
            return _parse(functools.partial(_open_member, folder), str(folder))
    if (root / ARCHIVE).is_file():
        try:
            with tarfile.open(root / ARCHIVE) as tar:
                return _parse(
                    lambda member: _tar_member(tar, f"{FOLDER}/{member}"), str(root / ARCHIVE)
                )
        except tarfile.TarError as err:
            raise ValueError(f"could not read {root / ARCHIVE}: {err}") from err
    found = (
        sorted(p.name for p in root.iterdir())[:10] if root.is_dir() else "nothing (no such folder)"
    )
    raise FileNotFoundError(
        f"expected CIFAR-100 ({FOLDER}/ with train, test and meta, or {ARCHIVE}) in {root}; "
        f"found {found}"
    )


def _open_member(folder: Path, member: str) -> IO[bytes]:
    return open(folder / member, "rb")


def _tar_member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    try:
        f = tar.extractfile(name)
    except KeyError:
        f = None
    if f is None:
        raise FileNotFoundError(f"expected {name} in {tar.name!s}; it is missing")
    return f


def _unpickle(opener: Callable[[str], IO[bytes]], member: str, where: str) -> dict[str, Any]:
    try:
        with opener(member) as f:
            data = pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise FileNotFoundError(f"expected the file {member} in {where}; it is missing") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError) as err:
        raise ValueError(f"could not unpickle {member} in {where}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"expected a dict in {member} of {where}; found {type(data).__name__}")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in data.items()}


def _names(meta: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    if key not in meta:
        raise ValueError(f"expected {key!r} in meta of {where}; found keys {sorted(meta)}")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[key])


def _parse(opener: Callable[[str], IO[bytes]], where: str) -> Cifar100:
    meta = _unpickle(opener, "meta", where)
    fine_names = _names(meta, "fine_label_names", where)
    coarse_names = _names(meta, "coarse_label_names", where)
    images, fine, coarse = [], [], []
    for member in ("train", "test"):
        part = _unpickle(opener, member, where)
        missing = {"data", "fine_labels", "coarse_labels"} - set(part)
        if missing:
            raise ValueError(
                f"expected keys data, fine_labels, coarse_labels in {member} of {where}; "
                f"missing {sorted(missing)}"
            )
        data = part["data"]
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == 3072):  # fmt: skip
            raise ValueError(
                f"expected data as uint8 [N, 3072] in {member} of {where}; found "
                f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}"
            )
        f_lab = np.asarray(part["fine_labels"], dtype=np.int64)
        c_lab = np.asarray(part["coarse_labels"], dtype=np.int64)
        if f_lab.shape != (len(data),) or c_lab.shape != (len(data),):
            raise ValueError(
                f"expected {len(data)} fine and coarse labels in {member} of {where}; found "
                f"{f_lab.shape} and {c_lab.shape}"
            )
        if len(data) and (f_lab.max() >= len(fine_names) or c_lab.max() >= len(coarse_names)
                          or min(f_lab.min(), c_lab.min()) < 0):  # fmt: skip
            raise ValueError(f"labels in {member} of {where} fall outside the names in meta")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        fine.append(f_lab)
        coarse.append(c_lab)
    return Cifar100(
        np.ascontiguousarray(np.concatenate(images)),
        np.concatenate(fine),
        np.concatenate(coarse),
        fine_names,
        coarse_names,
    )
