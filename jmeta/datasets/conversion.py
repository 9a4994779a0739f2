"""How an image file becomes a training example: size, channels and ink polarity.

A data set's loader turns its files into uint8 arrays ``[H, W, C]``; an image
given to a trained run later (``jmeta predict``) must become the same array.
:class:`ImageConversion` is that recipe, stated once: Pillow opens the file
(any format and mode it reads), converts it to grey (``"L"``) or ``"RGB"``,
resizes it to ``height x width`` with the loaders' filters (box when
shrinking, bilinear when enlarging, as ``jmeta.datasets.images.to_array``)
and, for Omniglot, inverts it (``255 - grey``: ink high, background 0). The
sampler then scales to ``[0, 1]`` (:func:`jmeta.tasks.to_float`).

A run records its conversion in its marker (``jmeta-run.json``, key
``"images"``); for a run written before that, :func:`dataset_conversion`
derives it from the data set's name and ``image_size``.

Example:
  >>> from jmeta.datasets.conversion import dataset_conversion
  >>> dataset_conversion("omniglot", None)
  ImageConversion(height=28, width=28, channels=1, invert=True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from jmeta.datasets.images import to_array

#: Each named data set's own image side and channels (``image_size=None``).
NATIVE: dict[str, tuple[int, int]] = {
    "omniglot": (28, 1),
    "mini_imagenet": (84, 3),
    "cifar_fs": (32, 3),
    "fc100": (32, 3),
}
#: Data sets stored with ink low that the loader inverts (ink high).
INVERTED = frozenset({"omniglot"})


class ImageConversion(NamedTuple):
    """The recipe that turns an image file into a model input, as the run's data were made.

    Attributes:
      height, width: the size the image is resized to, in pixels.
      channels: 1 (Pillow's ``"L"`` grey, ITU-R 601-2 luma) or 3 (``"RGB"``).
      invert: store ``255 - value`` (Omniglot: ink high, background 0).
    """

    height: int
    width: int
    channels: int
    invert: bool

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` of the converted arrays."""
        return (self.height, self.width, self.channels)

    def convert(self, image: Image.Image) -> np.ndarray:
        """An opened Pillow image as uint8 ``[height, width, channels]``."""
        if self.height == self.width:
            arr = to_array(image, self.height, self.channels)
        else:
            grey = image.convert("L" if self.channels == 1 else "RGB")
            shrink = self.width <= grey.size[0] and self.height <= grey.size[1]
            method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
            arr = np.asarray(grey.resize((self.width, self.height), method), np.uint8)
            arr = arr[..., None] if arr.ndim == 2 else arr
        return np.subtract(255, arr, dtype=np.uint8) if self.invert else arr

    def load(self, path: str | os.PathLike[str]) -> np.ndarray:
        """Read and convert the image file at ``path``.

        Raises:
          ValueError: Pillow cannot read the file as an image (the message
            names the path and the reason).
        """
        path = Path(path)
        try:
            with Image.open(path) as image:
                return self.convert(image)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            reason = str(err).replace(str(path), "").strip(" :'\"") or type(err).__name__
            if isinstance(err, UnidentifiedImageError):
                reason = "not an image format Pillow reads"
            raise ValueError(f"cannot read {path} as an image: {reason}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"height": ..., "width": ..., "channels": ..., "invert": ...}``."""
        return self._asdict()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ImageConversion:
        """The inverse of :meth:`to_dict`.

        Raises:
          ValueError: a field is missing or of the wrong kind.
        """
        try:
            out = cls(
                int(values["height"]),
                int(values["width"]),
                int(values["channels"]),
                bool(values["invert"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not an image conversion record: {dict(values)!r} ({err})") from None
        if out.channels not in (1, 3) or min(out.height, out.width) < 1:
            raise ValueError(f"not an image conversion record: {dict(values)!r}")
        return out


def conversion_for(dataset: str, image_shape: tuple[int, ...]) -> ImageConversion:
    """The conversion of a run on ``dataset`` whose images have ``image_shape`` ``(H, W, C)``."""
    height, width, channels = (int(d) for d in image_shape)
    return ImageConversion(height, width, channels, dataset in INVERTED)


def dataset_conversion(dataset: str, image_size: int | None) -> ImageConversion:
    """The conversion of ``dataset``'s loader at ``image_size`` (``None``: its own size).

    For runs that did not record theirs. ``tfds:NAME`` data sets keep their
    stored size and channels, which only their files know.

    Raises:
      ValueError: ``dataset`` is not one of :data:`NATIVE` (a tfds data set).
    """
    if dataset not in NATIVE:
        raise ValueError(
            f"the image conversion of {dataset!r} cannot be derived from its name (tfds data "
            "sets keep their stored size and channels)"
        )
    size, channels = NATIVE[dataset]
    side = size if image_size is None else int(image_size)
    return ImageConversion(side, side, channels, dataset in INVERTED)
