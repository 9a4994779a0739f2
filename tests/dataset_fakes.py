"""Tiny synthetic sources in the real formats, built by the tests."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def pixel_value(class_index: int, drawer: int) -> int:
    """The grey level a synthetic image encodes (dark ink on white, as Omniglot)."""
    return (class_index * 7 + drawer * 3) % 200


def png_bytes(value: int, size: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size), value, np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def make_omniglot_zip(
    path: Path,
    stem: str,
    alphabets: dict[str, int],
    *,
    drawers: int = 3,
    first_class: int = 0,
    extract: bool = False,
) -> list[str]:
    """Writes ``<stem>.zip`` (or the extracted folder) in the release layout.

    ``alphabets`` maps alphabet -> number of characters. Entries are written in
    shuffled order so loaders must sort. Returns the class names in the order a
    loader should produce, and encodes ``pixel_value(class, drawer)`` in each image.
    """
    entries = []
    names = []
    index = first_class
    for alphabet in sorted(alphabets):
        for c in range(1, alphabets[alphabet] + 1):
            names.append(f"{alphabet}/character{c:02d}")
            for d in range(1, drawers + 1):
                rel = f"{stem}/{alphabet}/character{c:02d}/{900 + index:04d}_{d:02d}.png"
                entries.append((rel, png_bytes(pixel_value(index, d))))
            index += 1
    order = np.random.default_rng(0).permutation(len(entries))
    if extract:
        for i in order:
            rel, data = entries[i]
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_bytes(data)
    else:
        with zipfile.ZipFile(path / f"{stem}.zip", "w") as z:
            for i in order:
                z.writestr(*entries[i])
    return names


def write_image(path: Path, value: int, size: tuple[int, int] = (10, 8), fmt: str = "PNG") -> None:
    """A solid RGB image whose red channel is ``value`` (``size`` is width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((size[1], size[0], 3), np.uint8)
    rgb[..., 0] = value
    rgb[..., 1] = 100
    Image.fromarray(rgb).save(path, format=fmt, quality=100)


def cifar100_arrays(train_per_class: int = 3, test_per_class: int = 1) -> dict:
    """CIFAR-100 python-release dicts (bytes keys, as the py2 pickles load).

    Row ``r`` of a file has fine label ``r % 100``; pixel [0, 0] of channel 0
    encodes the label and channel 1 the row index within the file (mod 256).
    """
    from jmeta.datasets.cifar_classes import CIFAR100_COARSE, CIFAR100_FINE, CIFAR100_SUPERCLASSES

    parent = {f: sc for sc, fs in CIFAR100_SUPERCLASSES.items() for f in fs}
    files = {}
    for member, per_class in (("train", train_per_class), ("test", test_per_class)):
        n = 100 * per_class
        fine = [r % 100 for r in range(n)]
        coarse = [CIFAR100_COARSE.index(parent[CIFAR100_FINE[f]]) for f in fine]
        data = np.zeros((n, 3, 32, 32), np.uint8)
        data[:, 0, 0, 0] = fine
        data[:, 1, 0, 0] = np.arange(n) % 256
        data[:, 2, 0, 0] = 0 if member == "train" else 1
        files[member] = {
            b"filenames": [f"{r}.png".encode() for r in range(n)],
            b"batch_label": member.encode(),
            b"fine_labels": fine,
            b"coarse_labels": coarse,
            b"data": data.reshape(n, 3072),
        }
    files["meta"] = {
        b"fine_label_names": [s.encode() for s in CIFAR100_FINE],
        b"coarse_label_names": [s.encode() for s in CIFAR100_COARSE],
    }
    return files


def write_cifar100(root: Path, files: dict, *, archive: bool = False) -> Path:
    """Writes ``cifar-100-python/{train,test,meta}`` (or the ``.tar.gz``) under ``root``."""
    import pickle
    import tarfile

    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for member, content in files.items():
        with open(folder / member, "wb") as f:
            pickle.dump(content, f, protocol=2)
    if archive:
        with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname="cifar-100-python")
        for member in files:
            (folder / member).unlink()
        folder.rmdir()
    return root
