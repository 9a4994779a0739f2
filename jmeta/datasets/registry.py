"""One front door for every data set: ``load(name, split, ...)``.

=================  ==============================================================
name               splits
=================  ==============================================================
``omniglot``       background, evaluation, small1, small2, vinyals-train,
                   vinyals-train-noval, vinyals-val, vinyals-test,
                   minimal-train, minimal-val, minimal-test
``mini_imagenet``  train, val, test
``cifar_fs``       train, val, test
``fc100``          train, val, test
``tfds:<name>``    any split of the tfds data set ``<name>``
=================  ==============================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from jmeta.datasets import cifar, mini_imagenet, omniglot
from jmeta.datasets.base import FewShotSplit
from jmeta.datasets.tfds import load_tfds

PathLike = str | os.PathLike[str]

#: Data set name -> its splits (``tfds:<name>`` accepts any tfds split).
DATASETS: dict[str, tuple[str, ...]] = {
    "omniglot": omniglot.SPLITS,
    "mini_imagenet": mini_imagenet.SPLITS,
    "cifar_fs": cifar.SPLITS,
    "fc100": cifar.SPLITS,
}


def load(
    name: str,
    split: str,
    data_dir: PathLike | None = None,
    image_size: int | None = None,
    cache_dir: PathLike | None = None,
    download: bool = False,
    **kwargs: Any,
) -> FewShotSplit:
    """Loads split ``split`` of data set ``name`` as a ``FewShotSplit``.

    Args:
      name: ``"omniglot"``, ``"mini_imagenet"``, ``"cifar_fs"``, ``"fc100"``
        or ``"tfds:<tfds name>"``.
      split: one of ``DATASETS[name]`` (any split for ``tfds:``).
      data_dir: where the source files are. Required for miniImageNet and the
        CIFAR sets; Omniglot defaults to ``$JMETA_OMNIGLOT_DIR`` or the cache.
      image_size: side of the square output images; ``None`` is each data
        set's standard (Omniglot 28, miniImageNet 84, CIFAR 32, tfds stored).
      cache_dir: cache for decoded arrays (see ``jmeta.datasets.cache``);
        ignored where nothing is cached (CIFAR pickles, miniImageNet pickles,
        tfds, which read fast already).
      download: fetch missing files where supported (Omniglot; tfds through
        tfds itself).
      **kwargs: passed on to the data set's loader (``load_omniglot``,
        ``load_mini_imagenet``, ``load_cifar_fs``, ``load_fc100``,
        ``load_tfds``).

    Returns:
      A ``FewShotSplit`` of uint8 images ``[classes, examples, H, W, C]``.

    Raises:
      ValueError: an unknown name or split, or ``download`` where unsupported.

    Example:
      >>> from jmeta.datasets import load
      >>> train = load("omniglot", "minimal-train")  # doctest: +SKIP
      >>> train.images.shape  # doctest: +SKIP
      (161, 20, 28, 28, 1)
    """
    if name.startswith("tfds:"):
        return load_tfds(
            name.removeprefix("tfds:"),
            split,
            data_dir=data_dir,
            image_size=image_size,
            download=download,
            **kwargs,
        )
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; expected one of {[*DATASETS, 'tfds:<name>']}")
    if split not in DATASETS[name]:
        raise ValueError(f"unknown {name} split {split!r}; expected one of {list(DATASETS[name])}")
    if name == "omniglot":
        return omniglot.load_omniglot(
            split,
            data_dir,
            image_size=28 if image_size is None else image_size,
            cache_dir=cache_dir,
            download=download,
            **kwargs,
        )
    if download:
        raise ValueError(
            f"{name} cannot be downloaded by jmeta; place its files in data_dir "
            "(see docs/datasets.md)"
        )
    if data_dir is None:
        raise ValueError(f"{name} needs data_dir: the folder holding its files")
    loaders: dict[str, Callable[..., FewShotSplit]] = {
        "mini_imagenet": mini_imagenet.load_mini_imagenet,
        "cifar_fs": cifar.load_cifar_fs,
        "fc100": cifar.load_fc100,
    }
    if name == "mini_imagenet":
        kwargs = {
            "image_size": mini_imagenet.IMAGE_SIZE if image_size is None else image_size,
            "cache_dir": cache_dir,
            **kwargs,
        }
    else:
        kwargs = {"image_size": image_size, **kwargs}
    return loaders[name](split, data_dir, **kwargs)
