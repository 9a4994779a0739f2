"""Omniglot on the real minimal zips (small1, small2), decoded once per session."""

from __future__ import annotations

import time

import numpy as np
import pytest

from jmeta.datasets import MINIMAL_ALPHABETS, load, load_omniglot

pytestmark = pytest.mark.slow

EXPECTED_ALPHABETS = {
    "small1": {"Balinese": 24, "Early_Aramaic": 22, "Greek": 24, "Korean": 40, "Latin": 26},
    "small2": {"Greek": 24, "Japanese_(katakana)": 47, "Latin": 26, "Sanskrit": 42, "Tagalog": 17},
}


def _alphabet_counts(split):
    counts = {}
    for name in split.class_names:
        alphabet = name.split("/")[0]
        counts[alphabet] = counts.get(alphabet, 0) + 1
    return counts


@pytest.mark.parametrize("source, num_classes", [("small1", 136), ("small2", 156)])
def test_small_zips_layout(omniglot_dir, real_cache, source, num_classes):
    split = load_omniglot(source, omniglot_dir, cache_dir=real_cache)
    assert split.images.shape == (num_classes, 20, 28, 28, 1)
    assert split.images.dtype == np.uint8
    assert _alphabet_counts(split) == EXPECTED_ALPHABETS[source]
    assert list(split.class_names) == sorted(split.class_names)
    # Ink high: most pixels are background 0, strokes reach 255.
    assert np.median(split.images) == 0
    assert split.images.max() == 255
    assert 5 < split.images.mean() < 60


def test_minimal_splits_are_fixed_and_disjoint(omniglot_dir, real_cache):
    splits = {
        part: load("omniglot", f"minimal-{part}", data_dir=omniglot_dir, cache_dir=real_cache)
        for part in ("train", "val", "test")
    }
    counts = {part: _alphabet_counts(s) for part, s in splits.items()}
    assert counts == {
        "train": {
            "Balinese": 24,
            "Greek": 24,
            "Japanese_(katakana)": 47,
            "Korean": 40,
            "Latin": 26,
        },
        "val": {"Early_Aramaic": 22},
        "test": {"Sanskrit": 42, "Tagalog": 17},
    }
    assert {p: tuple(c) for p, c in counts.items()} == MINIMAL_ALPHABETS
    assert [s.num_classes for s in splits.values()] == [161, 22, 59]
    names = [n for s in splits.values() for n in s.class_names]
    assert len(names) == len(set(names)) == 242
    assert all(s.num_classes >= 20 for s in splits.values())  # 20-way tasks everywhere


def test_greek_and_latin_are_identical_in_both_zips(omniglot_dir, real_cache):
    one = load_omniglot("small1", omniglot_dir, cache_dir=real_cache)
    two = load_omniglot("small2", omniglot_dir, cache_dir=real_cache)
    shared = [n for n in one.class_names if n in set(two.class_names)]
    assert {n.split("/")[0] for n in shared} == {"Greek", "Latin"}
    assert len(shared) == 50
    for name in shared:
        np.testing.assert_array_equal(
            one.images[one.class_names.index(name)], two.images[two.class_names.index(name)]
        )


def test_cached_reload_is_fast_and_keyed_by_checksum(omniglot_dir, real_cache):
    files = sorted(p.name for p in real_cache.iterdir())
    assert files == [
        "omniglot-images_background_small1-f38eb80f801274ac-28px-v2.npz",
        "omniglot-images_background_small2-3ccaa407515a8778-28px-v2.npz",
    ]
    start = time.perf_counter()
    split = load_omniglot("minimal-train", omniglot_dir, cache_dir=real_cache)
    assert time.perf_counter() - start < 0.5
    assert split.images.shape == (161, 20, 28, 28, 1)


def test_other_image_size_is_a_separate_entry(omniglot_dir, tmp_path):
    split = load_omniglot("small1", omniglot_dir, image_size=14, cache_dir=tmp_path)
    assert split.images.shape == (136, 20, 14, 14, 1)
    assert [p.name for p in tmp_path.iterdir()] == [
        "omniglot-images_background_small1-f38eb80f801274ac-14px-v2.npz"
    ]
