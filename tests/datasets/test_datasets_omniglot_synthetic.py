"""Omniglot code paths on tiny zips in the release layout: full release, Vinyals split, errors."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from dataset_fakes import make_omniglot_zip, pixel_value, png_bytes

from jmeta.datasets import load, load_omniglot, omniglot_files
from jmeta.datasets.omniglot_files import _natural_key


@pytest.fixture(autouse=True)
def _fake_release(monkeypatch):
    """These tiny zips are not the release's files: skip the digest check."""
    monkeypatch.setattr(omniglot_files, "KNOWN_DIGESTS", {})


@pytest.fixture
def release(tmp_path):
    """A tiny full release: 3 background and 2 evaluation alphabets."""
    data = tmp_path / "data"
    data.mkdir()
    background = make_omniglot_zip(data, "images_background", {"Bb": 2, "Aa": 3, "Cc": 1})
    evaluation = make_omniglot_zip(
        data, "images_evaluation", {"Ee": 2, "Dd": 2}, first_class=len(background)
    )
    return data, background, evaluation


def test_background_and_evaluation(release, tmp_path):
    data, background, evaluation = release
    bg = load_omniglot("background", data, image_size=None, cache_dir=tmp_path / "c")
    assert bg.class_names == tuple(background) == (
        "Aa/character01", "Aa/character02", "Aa/character03", "Bb/character01",
        "Bb/character02", "Cc/character01",
    )  # fmt: skip
    assert bg.images.shape == (6, 3, 6, 6, 1)
    # Drawers sorted and ink inverted: stored value is 255 - grey.
    for c in range(6):
        expected = [255 - pixel_value(c, d) for d in (1, 2, 3)]
        assert list(bg.images[c, :, 0, 0, 0]) == expected
    ev = load_omniglot("evaluation", data, image_size=None, cache_dir=tmp_path / "c")
    assert ev.class_names == tuple(evaluation)
    assert ev.images[0, 0, 0, 0, 0] == 255 - pixel_value(6, 1)


def test_vinyals_split_pools_background_then_evaluation(release, tmp_path):
    data, background, evaluation = release
    kwargs = dict(image_size=4, cache_dir=tmp_path / "c", vinyals_num_train=7)
    train = load_omniglot("vinyals-train", data, **kwargs)
    test = load_omniglot("vinyals-test", data, **kwargs)
    assert train.class_names == tuple(background + evaluation[:1])
    assert test.class_names == tuple(evaluation[1:])
    assert train.images.shape == (7, 3, 4, 4, 1) and test.images.shape == (3, 3, 4, 4, 1)
    with pytest.raises(ValueError, match="vinyals_num_train must be in 1..9"):
        load_omniglot("vinyals-train", data, image_size=4, cache_dir=tmp_path / "c",
                      vinyals_num_train=1200)  # fmt: skip


def test_folder_source_equals_zip_source(tmp_path):
    zipped, folder = tmp_path / "z", tmp_path / "f"
    zipped.mkdir()
    folder.mkdir()
    make_omniglot_zip(zipped, "images_background_small1", {"Aa": 2, "Bb": 1})
    make_omniglot_zip(folder, "images_background_small1", {"Aa": 2, "Bb": 1}, extract=True)
    a = load_omniglot("small1", zipped, image_size=None, cache_dir=tmp_path / "c")
    b = load_omniglot("small1", folder, image_size=None, cache_dir=tmp_path / "c")
    assert a.class_names == b.class_names
    np.testing.assert_array_equal(a.images, b.images)
    assert len(list((tmp_path / "c").iterdir())) == 2  # separate keys: zip sha vs folder hash


def test_data_dir_from_environment(tmp_path, monkeypatch):
    make_omniglot_zip(tmp_path, "images_background_small2", {"Aa": 1})
    monkeypatch.setenv("JMETA_OMNIGLOT_DIR", str(tmp_path))
    assert load("omniglot", "small2", image_size=5).images.shape == (1, 3, 5, 5, 1)


def test_natural_sort_key():
    names = ["character10", "character2", "character1"]
    assert sorted(names, key=_natural_key) == ["character1", "character2", "character10"]


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match=r"unknown Omniglot split 'train'.*minimal-train"):
        load_omniglot("train", tmp_path)


def test_missing_and_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"images_background_small1.zip.*folder is missing"):
        load_omniglot("small1", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"found an empty folder.*download=True"):
        load_omniglot("small1", tmp_path)
    (tmp_path / "images_background_small1").mkdir()
    with pytest.raises(ValueError, match="expected PNG files.*found none"):
        load_omniglot("small1", tmp_path, cache_dir=tmp_path / "c")


def test_corrupt_zip(tmp_path):
    (tmp_path / "images_background_small1.zip").write_bytes(b"PK\x03\x04 truncated garbage")
    with pytest.raises(ValueError, match="expected a zip archive"):
        load_omniglot("small1", tmp_path, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_corrupt_png_leaves_no_cache(tmp_path):
    with zipfile.ZipFile(tmp_path / "images_background_small1.zip", "w") as z:
        z.writestr("images_background_small1/Aa/character01/0001_01.png", png_bytes(3))
        z.writestr("images_background_small1/Aa/character01/0001_02.png", b"\x89PNG broken")
    with pytest.raises(ValueError, match="could not decode .*0001_02.png"):
        load_omniglot("small1", tmp_path, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists() or list((tmp_path / "c").iterdir()) == []


def test_unequal_drawer_counts(tmp_path):
    with zipfile.ZipFile(tmp_path / "images_background_small1.zip", "w") as z:
        z.writestr("images_background_small1/Aa/character01/0001_01.png", png_bytes(3))
        z.writestr("images_background_small1/Aa/character02/0002_01.png", png_bytes(3))
        z.writestr("images_background_small1/Aa/character02/0002_02.png", png_bytes(3))
    with pytest.raises(ValueError, match="different numbers of examples"):
        load_omniglot("small1", tmp_path, cache_dir=tmp_path / "c")


def test_minimal_split_needs_its_alphabets(tmp_path):
    make_omniglot_zip(tmp_path, "images_background_small1", {"Balinese": 1})
    make_omniglot_zip(tmp_path, "images_background_small2", {"Sanskrit": 1})
    with pytest.raises(ValueError, match=r"missing \['Tagalog'\]"):
        load_omniglot("minimal-test", tmp_path, cache_dir=tmp_path / "c")
