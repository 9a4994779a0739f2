"""miniImageNet: 100 ImageNet classes, 600 colour images each, at 84x84.

The split of Ravi and Larochelle (2017): 64 train, 16 val and 20 test classes.
Two sources are read, looked up in ``data_dir`` in this order:

1. The pickle caches ``mini-imagenet-cache-{train,val,test}.pkl``: a dict
   with ``image_data`` (uint8 ``[N, 84, 84, 3]``) and ``class_dict``
   (class name -> list of row indices into ``image_data``).
2. A folder ``<data_dir>/<split>/<class>/<images>`` of image files, resized
   to ``image_size`` (84 by default) and cached as ``.npz``.

Classes come out sorted by name; a class keeps its pickle indices' order (or
its file names' sorted order).

Security: a pickle can run code when loaded. Only load pickles you trust.

References:
  Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.
  Ravi and Larochelle, "Optimization as a Model for Few-Shot Learning", ICLR 2017.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from jmeta.datasets.base import FewShotSplit, common_count
from jmeta.datasets.folder import load_image_folder
from jmeta.datasets.images import resize_images

SPLITS = ("train", "val", "test")
IMAGE_SIZE = 84


def load_mini_imagenet(
    split: str,
    data_dir: str | os.PathLike[str],
    *,
    image_size: int | None = IMAGE_SIZE,
    examples_per_class: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    num_workers: int = 0,
) -> FewShotSplit:
    """Loads a miniImageNet split as ``[classes, 600, S, S, 3]`` uint8.

    Args:
      split: ``"train"``, ``"val"`` or ``"test"``.
      data_dir: folder holding ``mini-imagenet-cache-<split>.pkl`` or
        ``<split>/<class>/<images>``.
      image_size: side ``S``; 84 is the standard and the pickles' own size;
        ``None`` keeps the stored size (folder images must then share one).
      examples_per_class: ``None`` requires equal class sizes (600 in the
        release); ``k`` keeps the first ``k`` of each class.
      cache_dir: cache for decoded folder images (pickles are not re-cached).
      num_workers: decode folder images in this many spawned processes.

    Returns:
      A ``FewShotSplit`` with the class names of the source (WordNet ids).

    Raises:
      ValueError: unknown split; a pickle without the expected layout.
      FileNotFoundError: neither source is in ``data_dir``.

    Example:
      >>> train = load_mini_imagenet("train", "~/data/mini-imagenet")  # doctest: +SKIP
      >>> train.images.shape  # doctest: +SKIP
      (64, 600, 84, 84, 3)
    """
    if split not in SPLITS:
        raise ValueError(f"unknown miniImageNet split {split!r}; expected one of {list(SPLITS)}")
    root = Path(data_dir).expanduser()
    pickle_path = root / f"mini-imagenet-cache-{split}.pkl"
    folder = root / split
    if pickle_path.is_file():
        return load_mini_imagenet_pickle(
            pickle_path, image_size=image_size, examples_per_class=examples_per_class
        )
    if folder.is_dir():
        return load_image_folder(
            folder,
            image_size=image_size,
            channels=3,
            examples_per_class=examples_per_class,
            cache_dir=cache_dir,
            num_workers=num_workers,
        )
    found = sorted(p.name for p in root.iterdir())[:10] if root.is_dir() else "no such folder"
    raise FileNotFoundError(
        f"expected {pickle_path.name} or a folder {split}/<class>/<images> in {root}; found {found}"
    )


def load_mini_imagenet_pickle(
    path: str | os.PathLike[str],
    *,
    image_size: int | None = IMAGE_SIZE,
    examples_per_class: int | None = None,
) -> FewShotSplit:
    """Reads one ``mini-imagenet-cache-<split>.pkl`` file.

    Raises:
      ValueError: the file is not a pickle of the expected layout.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError) as err:
        raise ValueError(f"could not unpickle {path}: {err}") from err
    images, class_dict = _check_layout(data, path)
    names = sorted(class_dict, key=str)
    # Check sizes on index lists (cheap), then gather all images in one copy.
    counts = {str(n): len(class_dict[n]) for n in names}
    k = common_count(counts, examples_per_class, str(path))
    index = np.stack([np.asarray(class_dict[n], dtype=np.int64)[:k] for n in names])
    split = FewShotSplit(images[index], tuple(str(n) for n in names))
    if image_size is not None and split.images.shape[2:4] != (image_size, image_size):
        split = FewShotSplit(resize_images(split.images, image_size), split.class_names)
    return split


def _check_layout(data: object, path: Path) -> tuple[np.ndarray, dict]:
    expected = (
        "a dict with 'image_data' (uint8 [N, H, W, 3]) and 'class_dict' ({class name: [indices]})"
    )
    if not isinstance(data, dict) or not {"image_data", "class_dict"} <= set(data):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"expected {expected} in {path}; found {found}")
    images, class_dict = data["image_data"], data["class_dict"]
    if not (
        isinstance(images, np.ndarray)
        and images.dtype == np.uint8
        and images.ndim == 4
        and images.shape[-1] == 3
    ):
        raise ValueError(
            f"expected image_data as uint8 [N, H, W, 3] in {path}; found "
            f"{type(images).__name__} {getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}"
        )
    if not isinstance(class_dict, dict) or not class_dict:
        raise ValueError(f"expected a non-empty class_dict in {path}; found {class_dict!r:.80}")
    for name, indices in class_dict.items():
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"class {name!r} in {path}: expected a list of integer indices")
        if idx.min() < 0 or idx.max() >= len(images):
            raise ValueError(
                f"class {name!r} in {path} indexes rows {idx.min()}..{idx.max()}, but "
                f"image_data has {len(images)} rows"
            )
    return images, class_dict
