"""Decoding and resizing images with Pillow, serially or in worker processes.

Resizing uses Pillow's ``BOX`` filter when shrinking (each output pixel is the
mean of the source area it covers, so thin strokes fade instead of vanishing
or aliasing) and ``BILINEAR`` when enlarging.

Worker processes (``num_workers > 1``, off by default) are started with the
``spawn`` method, which is safe with JAX's threads; as with any ``spawn``
pool, a script that asks for workers must guard its entry point with
``if __name__ == "__main__":``. Each worker imports ``jmeta`` (and so JAX),
which costs seconds: workers pay off for expensive decodes such as a folder of
full-size JPEGs, not for Omniglot's small PNGs, where they are several times
slower on a 2-core machine (``benchmarks/results/datasets_speed.md``).
"""

from __future__ import annotations

import io
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

_MODES = {1: "L", 3: "RGB"}


def _resample(src: tuple[int, int], dst: tuple[int, int]) -> Image.Resampling:
    shrinking = dst[0] <= src[0] and dst[1] <= src[1]
    return Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR


def to_array(image: Image.Image, size: int | None, channels: int) -> np.ndarray:
    """A Pillow image as a uint8 ``[H, W, channels]`` array, resized to ``size``."""
    if size is not None and image.format == "JPEG":
        image.draft(_MODES[channels], (size, size))  # cheap DCT-domain downscale
    image = image.convert(_MODES[channels])
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), _resample(image.size, (size, size)))
    arr = np.asarray(image, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def decode_image(
    data: bytes | Path, *, size: int | None = None, channels: int = 1, name: str = "image"
) -> np.ndarray:
    """Decodes one encoded image (PNG, JPEG, ...) to uint8 ``[H, W, channels]``.

    Args:
      data: the encoded bytes, or the path of an image file.
      size: resize to ``size x size``; ``None`` keeps the stored size.
      channels: 1 (grey-scale) or 3 (RGB).
      name: what to call the image in errors.

    Raises:
      ValueError: the bytes are not a readable image.
    """
    try:
        with Image.open(data if isinstance(data, Path) else io.BytesIO(data)) as image:
            return to_array(image, size, channels)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"could not decode {name}: {err}") from err


def _decode_chunk(
    items: Sequence[tuple[str, bytes | Path]], size: int | None, channels: int
) -> list[np.ndarray]:
    return [decode_image(data, size=size, channels=channels, name=name) for name, data in items]


def decode_images(
    items: Sequence[tuple[str, bytes | Path]],
    *,
    size: int | None = None,
    channels: int = 1,
    num_workers: int = 0,
) -> list[np.ndarray]:
    """Decodes many ``(name, bytes or path)`` images, in order.

    Args:
      items: names (for errors) and encoded bytes or file paths.
      size: see ``decode_image``.
      channels: see ``decode_image``.
      num_workers: 0 or 1 decodes in this process; ``n > 1`` uses ``n`` spawned
        worker processes.

    Returns:
      One uint8 ``[H, W, channels]`` array per item.
    """
    if num_workers <= 1 or len(items) < 2 * num_workers:
        return _decode_chunk(items, size, channels)
    step = -(-len(items) // (4 * num_workers))
    chunks = [items[i : i + step] for i in range(0, len(items), step)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(num_workers, mp_context=context) as pool:
        parts = pool.map(_decode_chunk, chunks, [size] * len(chunks), [channels] * len(chunks))
        return [arr for part in parts for arr in part]


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resizes uint8 images ``[..., H, W, C]`` to ``[..., size, size, C]``.

    Uses the same filters as decoding, so a resized array equals decoding at
    that size up to rounding.
    """
    if images.shape[-3:-1] == (size, size):
        return images
    lead, (h, w, c) = images.shape[:-3], images.shape[-3:]
    flat = images.reshape(-1, h, w, c)
    out = np.empty((flat.shape[0], size, size, c), np.uint8)
    for i, img in enumerate(flat):
        pil = Image.fromarray(img[..., 0] if c == 1 else img)
        resized = np.asarray(pil.resize((size, size), _resample((w, h), (size, size))))
        out[i] = resized[..., None] if c == 1 else resized
    return out.reshape(*lead, size, size, c)
