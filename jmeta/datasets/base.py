"""The common layout every loader returns: one uint8 array of images per class.

A few-shot data set is a set of classes, each with the same number of
examples. Keeping it as one dense ``[num_classes, examples_per_class, H, W, C]``
uint8 array makes task sampling a pair of integer gathers, on host or device,
and keeps the host copy four times smaller than float32. Conversion to float
(and any normalisation) happens later, on device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np


class FewShotSplit(NamedTuple):
    """Images grouped by class.

    Attributes:
      images: uint8 array ``[num_classes, examples_per_class, H, W, C]``
        (``C`` is 1 for grey-scale data such as Omniglot, 3 for colour).
      class_names: one name per class, in the order of ``images``' first axis.

    Example:
      >>> import numpy as np
      >>> split = FewShotSplit(np.zeros((5, 20, 28, 28, 1), np.uint8),
      ...                      tuple(f"c{i}" for i in range(5)))
      >>> split.num_classes, split.examples_per_class, split.image_shape
      (5, 20, (28, 28, 1))
    """

    images: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return int(self.images.shape[0])

    @property
    def examples_per_class(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w, c = self.images.shape[2:]
        return int(h), int(w), int(c)


def check_split(split: FewShotSplit) -> FewShotSplit:
    """Checks the layout invariants of a ``FewShotSplit`` and returns it.

    Raises:
      ValueError: if ``images`` is not a 5-d uint8 array, or the number of
        names differs from the number of classes, or names repeat.
    """
    images = split.images
    if not isinstance(images, np.ndarray) or images.ndim != 5 or images.dtype != np.uint8:
        raise ValueError(
            "expected images as a uint8 array [classes, examples, H, W, C]; found "
            f"{type(images).__name__} of shape {getattr(images, 'shape', None)} and "
            f"dtype {getattr(images, 'dtype', None)}"
        )
    if len(split.class_names) != images.shape[0]:
        raise ValueError(
            f"expected one class name per class ({images.shape[0]}); found "
            f"{len(split.class_names)} names"
        )
    if len(set(split.class_names)) != len(split.class_names):
        raise ValueError("class names must be unique")
    return split


def common_count(
    counts: Mapping[str, int], examples_per_class: int | None, source: str = "the data"
) -> int:
    """The examples per class to keep, by the rule of ``stack_classes``.

    Args:
      counts: class name -> number of examples available.
      examples_per_class: ``None`` (all classes must be equal) or ``k``.
      source: what the data came from, for error messages.

    Raises:
      ValueError: no classes, unequal counts, or a class with fewer than ``k``.
    """
    if not counts:
        raise ValueError(f"expected at least one class in {source}; found none")
    smallest = min(counts, key=counts.__getitem__)
    largest = max(counts, key=counts.__getitem__)
    if examples_per_class is None:
        if counts[smallest] != counts[largest]:
            raise ValueError(
                f"classes in {source} have different numbers of examples: "
                f"{smallest!r} has {counts[smallest]}, {largest!r} has {counts[largest]}; "
                f"pass examples_per_class={counts[smallest]} to keep the first "
                f"{counts[smallest]} of each class"
            )
        k = counts[smallest]
    else:
        k = int(examples_per_class)
        if k < 1:
            raise ValueError(f"examples_per_class must be >= 1; got {examples_per_class}")
        if counts[smallest] < k:
            raise ValueError(
                f"expected at least {k} examples per class in {source}; class "
                f"{smallest!r} has {counts[smallest]}"
            )
    if k == 0:
        raise ValueError(f"expected examples in each class of {source}; found empty classes")
    return k


def stack_classes(
    groups: Mapping[str, Sequence[np.ndarray] | np.ndarray],
    *,
    examples_per_class: int | None = None,
    source: str = "the data",
) -> FewShotSplit:
    """Stacks per-class image lists into a ``FewShotSplit``.

    Classes keep the mapping's iteration order; examples keep list order.

    Rule for unequal class sizes: with ``examples_per_class=None`` every class
    must hold the same number of examples, otherwise a ``ValueError`` names the
    smallest and largest classes. With an integer ``k``, each class keeps its
    *first* ``k`` examples, and a class with fewer than ``k`` is an error (no
    class is silently dropped or padded).

    Args:
      groups: class name -> images of that class, each ``[H, W, C]`` uint8
        (or an already stacked ``[n, H, W, C]`` array).
      examples_per_class: see the rule above.
      source: what the data came from, for error messages.

    Returns:
      A ``FewShotSplit``.

    Raises:
      ValueError: no classes, unequal sizes, too few examples, or images of
        different shapes.
    """
    if not groups:
        raise ValueError(f"expected at least one class in {source}; found none")
    k = common_count(
        {name: len(items) for name, items in groups.items()}, examples_per_class, source
    )

    out: np.ndarray | None = None
    for i, (name, items) in enumerate(groups.items()):
        for j, x in enumerate(list(items)[:k]):
            arr = np.asarray(x)
            arr = arr[..., None] if arr.ndim == 2 else arr
            if out is None:
                out = np.empty((len(groups), k, *arr.shape), np.uint8)
            if arr.shape != out.shape[2:]:
                raise ValueError(
                    f"images in {source} have different shapes: {out.shape[2:]} and "
                    f"{arr.shape} (class {name!r}); pass an image_size to resize"
                )
            out[i, j] = arr
    if out is None:
        raise ValueError(f"expected at least one example per class in {source}; found none")
    return check_split(FewShotSplit(out, tuple(str(n) for n in groups)))


def concat_splits(*splits: FewShotSplit) -> FewShotSplit:
    """Concatenates splits along the class axis (shapes must agree)."""
    if not splits:
        raise ValueError("expected at least one split to concatenate")
    shapes = {s.images.shape[1:] for s in splits}
    if len(shapes) != 1:
        raise ValueError(f"cannot concatenate splits of shapes {sorted(shapes)}")
    names = tuple(n for s in splits for n in s.class_names)
    return check_split(FewShotSplit(np.concatenate([s.images for s in splits]), names))


def select_classes(split: FewShotSplit, names: Sequence[str]) -> FewShotSplit:
    """The classes ``names`` of ``split``, in the order given.

    Raises:
      ValueError: if a name is not a class of ``split``.
    """
    index = {n: i for i, n in enumerate(split.class_names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(
            f"classes not found: {missing[:5]}{' ...' if len(missing) > 5 else ''} "
            f"(the split has {len(index)} classes)"
        )
    order = np.asarray([index[n] for n in names], dtype=np.int64)
    return FewShotSplit(split.images[order], tuple(names))
