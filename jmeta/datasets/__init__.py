"""Few-shot data sets as dense uint8 class arrays.

Every loader returns a ``FewShotSplit``: ``images`` of shape
``[num_classes, examples_per_class, H, W, C]`` (uint8) and ``class_names``.
``load(name, split, ...)`` is the front door; see ``docs/datasets.md``.
"""

from jmeta.datasets.base import FewShotSplit, concat_splits, select_classes, stack_classes
from jmeta.datasets.cache import CacheWarning, cache_root
from jmeta.datasets.cifar import load_cifar_fs, load_fc100
from jmeta.datasets.cifar_classes import CIFAR_FS_CLASSES, FC100_CLASSES, FC100_SUPERCLASSES
from jmeta.datasets.conversion import ImageConversion, dataset_conversion
from jmeta.datasets.folder import load_image_folder
from jmeta.datasets.mini_imagenet import load_mini_imagenet
from jmeta.datasets.omniglot import (
    MINIMAL_ALPHABETS,
    VINYALS_VAL_ALPHABETS,
    load_omniglot,
    rotate_classes,
)
from jmeta.datasets.registry import DATASETS, load
from jmeta.datasets.tfds import load_tfds

__all__ = [
    "CIFAR_FS_CLASSES",
    "CacheWarning",
    "DATASETS",
    "FC100_CLASSES",
    "FC100_SUPERCLASSES",
    "FewShotSplit",
    "ImageConversion",
    "MINIMAL_ALPHABETS",
    "VINYALS_VAL_ALPHABETS",
    "cache_root",
    "concat_splits",
    "dataset_conversion",
    "load",
    "load_cifar_fs",
    "load_fc100",
    "load_image_folder",
    "load_mini_imagenet",
    "load_omniglot",
    "load_tfds",
    "rotate_classes",
    "select_classes",
    "stack_classes",
]
