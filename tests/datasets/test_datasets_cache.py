"""The on-disk cache: location, atomic writes, reuse, damaged entries, unwritable folders."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from jmeta.datasets import CacheWarning, FewShotSplit
from jmeta.datasets import cache as cache_module
from jmeta.datasets.cache import (
    CACHE_FORMAT,
    atomic_write,
    cache_root,
    cached_split,
    content_sha256,
    fingerprint_folder,
    hash_file,
)

ENTRY = f"entry-v{CACHE_FORMAT}.npz"


def _split():
    return FewShotSplit(np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4, 1), ("x", "y"))


def _rewrite(path: Path, **changes) -> None:
    """Rewrites an entry with some arrays replaced, keeping its stored key and checksum."""
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update(changes)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("JMETA_CACHE", str(tmp_path / "env"))
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("JMETA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "jmeta"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "jmeta"


def test_cached_split_builds_once_and_reloads(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return _split()

    first = cached_split(tmp_path, "entry", build)
    second = cached_split(tmp_path, "entry", build)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.images, second.images)
    assert second.class_names == ("x", "y")
    assert [p.name for p in tmp_path.iterdir()] == [ENTRY]
    with np.load(tmp_path / ENTRY) as data:
        assert str(data["key"]) == "entry"
        assert str(data["checksum"]) == content_sha256(_split())


def test_failed_build_leaves_no_entry(tmp_path):
    def build():
        raise ValueError("decode failed")

    with pytest.raises(ValueError, match="decode failed"):
        cached_split(tmp_path, "entry", build)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def write(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, write)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_corrupt_entry_is_rebuilt_with_a_warning(tmp_path):
    (tmp_path / ENTRY).write_bytes(b"not an npz")
    with pytest.warns(CacheWarning, match=rf"cache entry {tmp_path / ENTRY} is unreadable .*"
                      "rebuilding it"):  # fmt: skip
        split = cached_split(tmp_path, "entry", _split)
    assert split.class_names == ("x", "y")
    np.testing.assert_array_equal(cached_split(tmp_path, "entry", _split).images, _split().images)


def test_content_checksum_changes_with_pixels_names_and_order():
    base = content_sha256(_split())
    images = _split().images.copy()
    images[1, 2, 3, 3, 0] ^= 1
    assert content_sha256(FewShotSplit(images, ("x", "y"))) != base
    assert content_sha256(FewShotSplit(_split().images, ("y", "x"))) != base
    assert content_sha256(FewShotSplit(_split().images.reshape(2, 3, 2, 8, 1), ("x", "y"))) != base
    assert content_sha256(_split()) == base


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda s: {"images": s.images ^ np.uint8(1)}, id="altered-pixels"),
        pytest.param(lambda s: {"class_names": np.asarray(["y", "x"])}, id="reordered-names"),
        pytest.param(lambda s: {"images": s.images[::-1].copy()}, id="reordered-images"),
        pytest.param(lambda s: {"checksum": np.asarray("0" * 64)}, id="altered-checksum"),
    ],
)
def test_altered_entry_is_detected_and_rebuilt(tmp_path, change):
    calls = []

    def build():
        calls.append(1)
        return _split()

    cached_split(tmp_path, "entry", build)
    _rewrite(tmp_path / ENTRY, **change(_split()))
    message = (
        rf"cache entry {tmp_path / ENTRY} does not match its stored content checksum "
        r"\(altered or damaged\); rebuilding it"
    )
    with pytest.warns(CacheWarning, match=message):
        split = cached_split(tmp_path, "entry", build)
    assert len(calls) == 2
    assert split.class_names == ("x", "y")
    np.testing.assert_array_equal(split.images, _split().images)
    # The rebuilt entry replaced the altered one: the next load reads it silently.
    np.testing.assert_array_equal(cached_split(tmp_path, "entry", build).images, _split().images)
    assert len(calls) == 2


def test_entry_copied_under_another_name_is_rebuilt(tmp_path):
    cached_split(tmp_path, "entry", _split)
    other = FewShotSplit(np.zeros((1, 1, 2, 2, 1), np.uint8), ("z",))
    shutil.copyfile(tmp_path / ENTRY, tmp_path / f"other-v{CACHE_FORMAT}.npz")
    with pytest.warns(CacheWarning, match=r"other-v\d+\.npz was made for another entry "
                      r"\('entry', not 'other'\); rebuilding it"):  # fmt: skip
        assert cached_split(tmp_path, "other", lambda: other).class_names == ("z",)


def test_entry_without_checksum_is_rebuilt(tmp_path):
    with open(tmp_path / ENTRY, "wb") as f:
        np.savez_compressed(f, images=_split().images, class_names=np.asarray(["x", "y"]))
    with pytest.warns(CacheWarning, match=r"is unreadable \(KeyError: .*key"):
        assert cached_split(tmp_path, "entry", _split).class_names == ("x", "y")


def _unwritable(monkeypatch, err: OSError) -> None:
    """Every temporary file in the cache fails as a read-only or full disk would."""

    def mkstemp(*args, **kwargs):
        raise err

    monkeypatch.setattr(cache_module.tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize(
    "err",
    [
        OSError(errno.EROFS, os.strerror(errno.EROFS)),
        PermissionError(errno.EACCES, os.strerror(errno.EACCES)),
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    ],
    ids=["read-only", "no-permission", "disk-full"],
)
def test_unwritable_cache_folder_returns_the_data_with_a_warning(tmp_path, monkeypatch, err):
    _unwritable(monkeypatch, err)
    with pytest.warns(CacheWarning, match=rf"could not write to the cache folder {tmp_path} "
                      rf"\({err.strerror}\); continuing without caching"):  # fmt: skip
        split = cached_split(tmp_path, "entry", _split)
    np.testing.assert_array_equal(split.images, _split().images)
    assert list(tmp_path.iterdir()) == []


def test_cache_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_bytes(b"")  # a file where the cache folder should be
    with pytest.warns(CacheWarning, match=rf"could not write to the cache folder {tmp_path}/file"):
        split = cached_split(tmp_path / "file", "entry", _split)
    assert split.class_names == ("x", "y")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_cache_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.warns(CacheWarning, match=f"could not write to the cache folder {folder}"):
            assert cached_split(folder, "entry", _split).class_names == ("x", "y")
    finally:
        folder.chmod(0o700)


def test_hash_file_reads_once_for_several_digests(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert hash_file(path, "sha256", "md5") == {
        "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "md5": "900150983cd24fb0d6963f7d28e17f72",
    }


def test_fingerprint_folder_tracks_content_and_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.png").write_bytes(b"one")
    before = fingerprint_folder(tmp_path)
    assert fingerprint_folder(tmp_path) == before
    (tmp_path / "a" / "1.png").write_bytes(b"two")
    assert fingerprint_folder(tmp_path) != before
    cheap = fingerprint_folder(tmp_path, content=False)
    (tmp_path / "a" / "2.png").write_bytes(b"x")
    assert fingerprint_folder(tmp_path, content=False) != cheap
