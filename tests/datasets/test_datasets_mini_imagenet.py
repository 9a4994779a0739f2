"""miniImageNet from pickle caches and from class folders, made by the test."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from dataset_fakes import write_image

from jmeta.datasets import load, load_mini_imagenet


def _write_pickle(path, n_classes=3, per_class=4, size=84):
    rng = np.random.default_rng(0)
    n = n_classes * per_class
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    order = rng.permutation(n)  # class rows interleaved, as any index list allows
    class_dict = {
        f"n0{c}": [int(i) for i in order[c * per_class : (c + 1) * per_class]]
        for c in reversed(range(n_classes))
    }
    with open(path, "wb") as f:
        pickle.dump({"image_data": images, "class_dict": class_dict}, f, protocol=4)
    return images, class_dict


def test_pickle_source(tmp_path):
    images, class_dict = _write_pickle(tmp_path / "mini-imagenet-cache-val.pkl")
    split = load_mini_imagenet("val", tmp_path)
    assert split.class_names == ("n00", "n01", "n02")  # sorted
    assert split.images.shape == (3, 4, 84, 84, 3)
    for c, name in enumerate(split.class_names):
        np.testing.assert_array_equal(split.images[c], images[class_dict[name]])
    small = load("mini_imagenet", "val", data_dir=tmp_path, image_size=32)
    assert small.images.shape == (3, 4, 32, 32, 3)


def test_pickle_unequal_classes(tmp_path):
    images = np.zeros((5, 84, 84, 3), np.uint8)
    with open(tmp_path / "mini-imagenet-cache-test.pkl", "wb") as f:
        pickle.dump({"image_data": images, "class_dict": {"a": [0, 1, 2], "b": [3, 4]}}, f)
    with pytest.raises(ValueError, match="'b' has 2, 'a' has 3"):
        load_mini_imagenet("test", tmp_path)
    assert load_mini_imagenet("test", tmp_path, examples_per_class=2).images.shape[:2] == (2, 2)


@pytest.mark.parametrize(
    "content, match",
    [
        ([1, 2, 3], "expected a dict with 'image_data'.*found list"),
        ({"images": 1}, r"found \['images'\]"),
        (
            {"image_data": np.zeros((2, 84, 84), np.uint8), "class_dict": {"a": [0]}},
            "uint8 \\[N, H, W, 3\\]",
        ),
        ({"image_data": np.zeros((2, 8, 8, 3), np.float32), "class_dict": {"a": [0]}}, "float32"),
        (
            {"image_data": np.zeros((2, 8, 8, 3), np.uint8), "class_dict": {}},
            "non-empty class_dict",
        ),
        (
            {"image_data": np.zeros((2, 8, 8, 3), np.uint8), "class_dict": {"a": [0, 5]}},
            "indexes rows 0..5",
        ),
    ],
)
def test_wrong_pickle_layout(tmp_path, content, match):
    with open(tmp_path / "mini-imagenet-cache-train.pkl", "wb") as f:
        pickle.dump(content, f)
    with pytest.raises(ValueError, match=match):
        load_mini_imagenet("train", tmp_path)


def test_not_a_pickle(tmp_path):
    (tmp_path / "mini-imagenet-cache-train.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="could not unpickle"):
        load_mini_imagenet("train", tmp_path)


def test_folder_source_resizes_mixed_sizes_and_caches(tmp_path):
    root = tmp_path / "mini"
    for c, wnid in enumerate(["n02", "n01"]):
        for i in range(3):
            size = (120, 90) if i == 0 else (84, 84)
            fmt = "JPEG" if i == 2 else "PNG"
            write_image(root / "train" / wnid / f"img{i}.{fmt.lower()}", 40 * c + 10 * i, size, fmt)
    (root / "train" / "n01" / ".DS_Store").write_bytes(b"junk")
    (root / "train" / "n01" / "notes.txt").write_text("ignored")
    cache = tmp_path / "cache"
    split = load_mini_imagenet("train", root, cache_dir=cache)
    assert split.class_names == ("n01", "n02")
    assert split.images.shape == (2, 3, 84, 84, 3)
    reds = split.images[:, :, 40, 40, 0].astype(int)
    np.testing.assert_allclose(reds, [[40, 50, 60], [0, 10, 20]], atol=3)  # JPEG is lossy
    assert len(list(cache.iterdir())) == 1
    again = load_mini_imagenet("train", root, cache_dir=cache)
    np.testing.assert_array_equal(again.images, split.images)


def test_folder_mixed_sizes_without_resize(tmp_path):
    write_image(tmp_path / "val" / "a" / "1.png", 1, (8, 8))
    write_image(tmp_path / "val" / "a" / "2.png", 2, (9, 8))
    with pytest.raises(ValueError, match=r"mixed sizes: .*1.png is 8x8, .*2.png is 9x8"):
        load_mini_imagenet("val", tmp_path, image_size=None, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").iterdir())


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="mini-imagenet-cache-test.pkl or a folder test"):
        load_mini_imagenet("test", tmp_path)
    (tmp_path / "test").mkdir()
    with pytest.raises(ValueError, match="expected class subfolders .*found none"):
        load_mini_imagenet("test", tmp_path)
    (tmp_path / "test" / "n01").mkdir()
    with pytest.raises(ValueError, match="expected image files .*found none"):
        load_mini_imagenet("test", tmp_path)
    (tmp_path / "test" / "n01" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="could not decode .*x.png"):
        load_mini_imagenet("test", tmp_path, cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="unknown miniImageNet split 'training'"):
        load_mini_imagenet("training", tmp_path)
