"""The on-disk cache: location, atomic writes, reuse, corrupt entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jmeta.datasets import FewShotSplit
from jmeta.datasets.cache import atomic_write, cache_root, cached_split, fingerprint_folder


def _split():
    return FewShotSplit(np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4, 1), ("x", "y"))


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
    assert [p.name for p in tmp_path.iterdir()] == ["entry-v1.npz"]


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


def test_corrupt_entry_is_rebuilt(tmp_path):
    (tmp_path / "entry-v1.npz").write_bytes(b"not an npz")
    split = cached_split(tmp_path, "entry", _split)
    assert split.class_names == ("x", "y")
    np.testing.assert_array_equal(cached_split(tmp_path, "entry", _split).images, _split().images)


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
