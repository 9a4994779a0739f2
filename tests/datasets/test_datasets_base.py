"""The FewShotSplit layout and its helpers."""

from __future__ import annotations

import numpy as np
import pytest

from jmeta.datasets import (
    FewShotSplit,
    concat_splits,
    rotate_classes,
    select_classes,
    stack_classes,
)


def _images(n, value=0, shape=(4, 4)):
    return [np.full(shape, value + i, np.uint8) for i in range(n)]


def test_stack_classes_layout_and_order():
    split = stack_classes({"b": _images(3, 10), "a": _images(3, 20)})
    assert split.images.shape == (2, 3, 4, 4, 1)
    assert split.images.dtype == np.uint8
    assert split.class_names == ("b", "a")  # mapping order, not sorted
    assert split.images[1, 2, 0, 0, 0] == 22
    assert (split.num_classes, split.examples_per_class, split.image_shape) == (2, 3, (4, 4, 1))


def test_stack_classes_unequal_sizes_is_an_error_naming_the_classes():
    with pytest.raises(ValueError, match=r"'small' has 2, 'big' has 5.*examples_per_class=2"):
        stack_classes({"small": _images(2), "big": _images(5)})


def test_stack_classes_truncates_to_first_k():
    split = stack_classes({"small": _images(2), "big": _images(5, 100)}, examples_per_class=2)
    assert split.images.shape[:2] == (2, 2)
    assert list(split.images[1, :, 0, 0, 0]) == [100, 101]
    with pytest.raises(ValueError, match="at least 3 examples per class.*'small' has 2"):
        stack_classes({"small": _images(2), "big": _images(5)}, examples_per_class=3)


def test_stack_classes_rejects_empty_and_mixed_shapes():
    with pytest.raises(ValueError, match="at least one class"):
        stack_classes({})
    with pytest.raises(ValueError, match="empty classes"):
        stack_classes({"a": []})
    with pytest.raises(ValueError, match="different shapes"):
        stack_classes({"a": _images(2), "b": _images(2, shape=(5, 5))})


def test_select_and_concat():
    split = stack_classes({c: _images(2, i * 10) for i, c in enumerate("abc")})
    picked = select_classes(split, ["c", "a"])
    assert picked.class_names == ("c", "a")
    assert picked.images[0, 0, 0, 0, 0] == 20
    with pytest.raises(ValueError, match=r"classes not found: \['z'\]"):
        select_classes(split, ["z"])
    both = concat_splits(picked, select_classes(split, ["b"]))
    assert both.class_names == ("c", "a", "b")
    with pytest.raises(ValueError, match="unique"):
        concat_splits(split, split)


def test_rotate_classes_is_class_major_and_counter_clockwise():
    images = np.zeros((2, 3, 5, 5, 1), np.uint8)
    images[:, :, 0, 4] = 255  # top-right corner
    images[1] += 1
    out = rotate_classes(FewShotSplit(images, ("a", "b")))
    assert out.images.shape == (8, 3, 5, 5, 1)
    assert out.class_names[:5] == ("a/rot000", "a/rot090", "a/rot180", "a/rot270", "b/rot000")
    np.testing.assert_array_equal(out.images[0], images[0])
    # Counter-clockwise by 90: the top-right corner moves to the top-left.
    assert out.images[1, 0, 0, 0, 0] == 255
    assert out.images[2, 0, 4, 0, 0] == 255  # 180: bottom-left
    assert out.images[3, 0, 4, 4, 0] == 255  # 270: bottom-right
    np.testing.assert_array_equal(out.images[6], np.rot90(images[1], 2, axes=(1, 2)))
    np.testing.assert_array_equal(rotate_classes(images), out.images)  # a bare array works too
    with pytest.raises(
        ValueError, match=r"\[classes, examples, S, S, C\]; found \(1, 1, 4, 5, 1\)"
    ):
        rotate_classes(FewShotSplit(np.zeros((1, 1, 4, 5, 1), np.uint8), ("a",)))
