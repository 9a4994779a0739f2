"""Omniglot sources and cache under faults: wrong zips, .PNG names, altered or unwritable caches."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from dataset_fakes import make_omniglot_zip

from jmeta.datasets import CacheWarning, load_omniglot, omniglot_files
from jmeta.datasets import cache as cache_module
from jmeta.datasets.cache import hash_file


def _count_hashes(monkeypatch) -> list[tuple[str, ...]]:
    """Records the algorithms of every ``hash_file`` call made for Omniglot zips."""
    calls = []

    def spy(path, *algorithms):
        calls.append(algorithms)
        return hash_file(path, *algorithms)

    monkeypatch.setattr(omniglot_files, "hash_file", spy)
    return calls


@pytest.mark.parametrize(
    "source, stem, expected",
    [
        ("background", "images_background", "md5 68d2efa1b9178cc56df9314c21c6e718"),
        ("evaluation", "images_evaluation", "md5 6b91aef0f799c5bb55b94e3f2daec811"),
        (
            "small1",
            "images_background_small1",
            "sha256 f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
        ),  # noqa: E501
    ],
)
def test_local_zip_that_is_not_the_release_is_one_clear_error(tmp_path, source, stem, expected):
    make_omniglot_zip(tmp_path, stem, {"Aa": 1})
    algorithm = expected.split()[0]
    found = hash_file(tmp_path / f"{stem}.zip", algorithm)[algorithm]
    message = (
        f"{tmp_path}/{stem}.zip is not the Omniglot release's {stem}.zip: expected {expected}, "
        f"found {found}. Replace it with https://github.com/brendenlake/omniglot/raw/master/"
        f"python/{stem}.zip (or delete it and pass download=True); to use other images on "
        f"purpose, extract them into a folder {stem}/ instead"
    )
    with pytest.raises(ValueError) as info:
        load_omniglot(source, tmp_path, cache_dir=tmp_path / "c")
    assert str(info.value) == message
    assert not (tmp_path / "c").exists()  # nothing decoded, nothing cached


def test_extracted_folder_is_read_as_it_is(tmp_path):
    make_omniglot_zip(tmp_path, "images_background_small1", {"Aa": 2}, extract=True)
    assert load_omniglot("small1", tmp_path, cache_dir=tmp_path / "c").num_classes == 2


def test_zip_digest_is_checked_once_per_cache_entry(tmp_path, monkeypatch):
    """The md5 of a full zip is computed only when its cache entry is built."""
    make_omniglot_zip(tmp_path, "images_evaluation", {"Aa": 2})
    md5 = hash_file(tmp_path / "images_evaluation.zip", "md5")["md5"]
    monkeypatch.setitem(omniglot_files.KNOWN_DIGESTS, "images_evaluation", ("md5", md5))
    calls = _count_hashes(monkeypatch)
    load_omniglot("evaluation", tmp_path, image_size=4, cache_dir=tmp_path / "c")
    assert calls == [("sha256",), ("md5",)]  # the cache key, then the check
    load_omniglot("evaluation", tmp_path, image_size=4, cache_dir=tmp_path / "c")
    assert calls == [("sha256",), ("md5",), ("sha256",)]  # cached: the key only


def test_small_zip_check_reuses_the_key_sha256(omniglot_dir, tmp_path, monkeypatch):
    calls = _count_hashes(monkeypatch)
    load_omniglot("small1", omniglot_dir, image_size=4, cache_dir=tmp_path)
    assert calls == [("sha256",)]


@pytest.mark.parametrize("suffix", [".PNG", ".Png"])
def test_upper_case_png_in_a_folder_is_read_as_in_a_zip(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(omniglot_files, "KNOWN_DIGESTS", {})
    zipped, folder = tmp_path / "z", tmp_path / "f"
    zipped.mkdir()
    folder.mkdir()
    make_omniglot_zip(zipped, "images_background_small1", {"Aa": 2, "Bb": 1})
    make_omniglot_zip(folder, "images_background_small1", {"Aa": 2, "Bb": 1}, extract=True)
    files = sorted((folder / "images_background_small1").rglob("*.png"))
    for file in files[::2]:  # mixed case: every other file renamed
        file.rename(file.with_suffix(suffix))
    a = load_omniglot("small1", zipped, image_size=None, cache_dir=tmp_path / "c")
    b = load_omniglot("small1", folder, image_size=None, cache_dir=tmp_path / "c")
    assert b.images.shape == a.images.shape == (3, 3, 6, 6, 1)
    assert a.class_names == b.class_names
    np.testing.assert_array_equal(a.images, b.images)


def test_macos_metadata_is_skipped_in_folders_as_in_zips(tmp_path):
    make_omniglot_zip(tmp_path, "images_background_small1", {"Aa": 1}, extract=True)
    junk = tmp_path / "images_background_small1" / "__MACOSX" / "Aa" / "character01"
    junk.mkdir(parents=True)
    (junk / "._0900_01.png").write_bytes(b"not a png")
    assert load_omniglot("small1", tmp_path, cache_dir=tmp_path / "c").num_classes == 1


def test_read_only_cache_after_a_good_decode_warns_and_returns_the_data(tmp_path, monkeypatch):
    make_omniglot_zip(tmp_path, "images_background_small1", {"Aa": 2}, extract=True)
    expected = load_omniglot("small1", tmp_path, image_size=4, cache_dir=tmp_path / "ok")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(cache_module.tempfile, "mkstemp", read_only)
    cache = tmp_path / "ro"
    with pytest.warns(CacheWarning, match=rf"could not write to the cache folder {cache} "
                      r"\(Read-only file system\); continuing without caching"):  # fmt: skip
        split = load_omniglot("small1", tmp_path, image_size=4, cache_dir=cache)
    assert split.class_names == expected.class_names
    np.testing.assert_array_equal(split.images, expected.images)


def test_altered_omniglot_cache_entry_is_rebuilt(tmp_path):
    make_omniglot_zip(tmp_path, "images_background_small1", {"Aa": 2, "Bb": 2}, extract=True)
    cache = tmp_path / "c"
    expected = load_omniglot("small1", tmp_path, image_size=4, cache_dir=cache)
    (entry,) = cache.iterdir()
    with np.load(entry) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["class_names"] = arrays["class_names"][::-1]  # labels now point at other images
    with open(entry, "wb") as f:
        np.savez_compressed(f, **arrays)
    with pytest.warns(CacheWarning, match=rf"cache entry {entry} does not match its stored "
                      r"content checksum"):  # fmt: skip
        split = load_omniglot("small1", tmp_path, image_size=4, cache_dir=cache)
    assert split.class_names == expected.class_names
    np.testing.assert_array_equal(split.images, expected.images)
