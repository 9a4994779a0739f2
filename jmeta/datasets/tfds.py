"""Any tensorflow-datasets image classification set, grouped by label.

Reads a prepared data set through ``tfds.data_source`` (the ``array_record``
file format, random access, no TensorFlow needed) and groups its examples by
label into the ``FewShotSplit`` layout. Install with ``pip install
jmeta[tfds]``. Preparing a data set (``download=True``) is tfds' own job and,
for many builders, does need TensorFlow; reading a prepared one does not.

Note on ``omniglot`` from tfds: its images are 105x105 RGB, black ink on
white. ``load_tfds("omniglot", "small1", channels=1, image_size=28,
invert=True)`` gives the layout of ``jmeta.datasets.load_omniglot`` (ink high),
with tfds' class order (by label id) instead of ours (by name).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import numpy as np

from jmeta.datasets.base import FewShotSplit, stack_classes
from jmeta.datasets.images import resize_images


def import_tfds() -> ModuleType:
    """Imports ``tensorflow_datasets``, or explains how to install it."""
    try:
        return importlib.import_module("tensorflow_datasets")
    except ImportError as err:
        raise ImportError(
            "the tfds backend needs tensorflow-datasets (no TensorFlow required): "
            "pip install 'jmeta[tfds]'"
        ) from err


def load_tfds(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    invert: bool = False,
    examples_per_class: int | None = None,
    image_key: str = "image",
    label_key: str = "label",
    download: bool = False,
) -> FewShotSplit:
    """Loads a tfds split as ``[classes, examples, H, W, C]`` uint8.

    Args:
      name: the tfds builder name (``"omniglot"``, ``"cifar100"``, ...),
        optionally with config and version (``"name/config:1.0.0"``).
      split: a tfds split (``"train"``, ``"test"``, ``"small1"``, ...).
      data_dir: tfds data folder (tfds' default when ``None``).
      image_size: resize to ``S x S``; ``None`` keeps the stored size (which
        must then be the same for all images).
      channels: convert to 1 (grey) or 3 (RGB) channels; ``None`` keeps them.
      invert: store ``255 - image`` (for black-on-white data such as Omniglot).
      examples_per_class: ``None`` requires equal class sizes; ``k`` keeps the
        first ``k`` examples (in record order) of each class.
      image_key: the image feature's name.
      label_key: the label feature's name.
      download: let tfds download and prepare the data set if missing.

    Returns:
      A ``FewShotSplit``, classes in label-id order, named by the label
      feature's names (or the id as text).

    Raises:
      ImportError: tensorflow-datasets is not installed.
      ValueError: missing features or unequal class sizes.

    Example:
      >>> split = load_tfds("omniglot", "small1", channels=1, image_size=28,
      ...                   invert=True)  # doctest: +SKIP
    """
    tfds = import_tfds()
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    return group_by_label(
        source,
        label_names=_label_names(source, label_key),
        image_size=image_size,
        channels=channels,
        invert=invert,
        examples_per_class=examples_per_class,
        image_key=image_key,
        label_key=label_key,
        source_name=f"tfds {name}:{split}",
    )


def _label_names(source: Any, label_key: str) -> tuple[str, ...] | None:
    info = getattr(source, "dataset_info", None)
    if info is None:
        return None
    try:
        return tuple(info.features[label_key].names)
    except (AttributeError, KeyError, TypeError):
        return None


def group_by_label(
    source: Any,
    *,
    label_names: tuple[str, ...] | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    invert: bool = False,
    examples_per_class: int | None = None,
    image_key: str = "image",
    label_key: str = "label",
    source_name: str = "the data source",
) -> FewShotSplit:
    """Groups a random-access source of ``{image, label}`` dicts by label.

    ``source`` is anything with ``len`` and integer indexing returning dicts
    (a tfds data source, a list). See ``load_tfds`` for the arguments.
    """
    groups: dict[int, list[np.ndarray]] = {}
    for i in range(len(source)):
        example = source[i]
        if image_key not in example or label_key not in example:
            raise ValueError(
                f"expected features {image_key!r} and {label_key!r} in {source_name}; found "
                f"{sorted(example)}"
            )
        image = np.asarray(example[image_key])
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(
                f"expected uint8 images [H, W, C] in {source_name}; "
                f"found {image.dtype} {image.shape}"
            )
        groups.setdefault(int(example[label_key]), []).append(_prepare(image, image_size, channels))
    names = {
        label: label_names[label] if label_names and label < len(label_names) else str(label)
        for label in sorted(groups)
    }
    split = stack_classes(
        {names[label]: groups[label] for label in sorted(groups)},
        examples_per_class=examples_per_class,
        source=source_name,
    )
    if invert:
        split = FewShotSplit(np.subtract(255, split.images, dtype=np.uint8), split.class_names)
    return split


def _prepare(image: np.ndarray, size: int | None, channels: int | None) -> np.ndarray:
    image = image[..., None] if image.ndim == 2 else image
    if channels == 1 and image.shape[-1] == 3:
        weights = np.array([0.299, 0.587, 0.114])  # ITU-R 601-2 luma, as Pillow's "L"
        image = np.round(image @ weights).astype(np.uint8)[..., None]
    elif channels == 3 and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    elif channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3; got {channels}")
    if size is not None:
        image = resize_images(image, size)
    return image
