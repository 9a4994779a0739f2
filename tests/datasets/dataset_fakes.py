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
