"""download=True without a network: the fetch function serves local files."""

from __future__ import annotations

import shutil
import urllib.error

import pytest
from dataset_fakes import make_omniglot_zip

from jmeta.datasets import cache as cache_module
from jmeta.datasets import download as download_module
from jmeta.datasets import load_omniglot, omniglot_files
from jmeta.datasets.cache import hash_file, sha256_file


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Serves files from a local 'server' folder; records the URLs asked for."""
    server = tmp_path / "server"
    server.mkdir()
    asked = []

    def fetch(url, dest):
        asked.append(url)
        shutil.copyfile(server / url.rsplit("/", 1)[-1], dest)

    monkeypatch.setattr(download_module, "fetch_url", fetch)
    return server, asked


def test_download_small_zip_with_known_checksum(tmp_path, served, monkeypatch):
    server, asked = served
    make_omniglot_zip(server, "images_background_small1", {"Aa": 2})
    monkeypatch.setitem(
        omniglot_files.KNOWN_DIGESTS,
        "images_background_small1",
        ("sha256", sha256_file(server / "images_background_small1.zip")),
    )
    data = tmp_path / "data"
    split = load_omniglot("small1", data, image_size=4, cache_dir=tmp_path / "c", download=True)
    assert split.images.shape == (2, 3, 4, 4, 1)
    assert asked == [
        "https://github.com/brendenlake/omniglot/raw/master/python/images_background_small1.zip"
    ]
    assert sorted(p.name for p in data.iterdir()) == ["images_background_small1.zip"]
    # Present now: not fetched again.
    load_omniglot("small1", data, image_size=4, cache_dir=tmp_path / "c", download=True)
    assert len(asked) == 1


def test_checksum_mismatch_leaves_nothing(tmp_path, served):
    server, _ = served
    make_omniglot_zip(server, "images_background_small1", {"Aa": 2})  # not the real zip
    data = tmp_path / "data"
    with pytest.raises(
        ValueError,
        match=r"download of images_background_small1.zip is not the release's file: "
        r"expected sha256 f38eb80f80\w+, found \w+$",
    ):
        load_omniglot("small1", data, cache_dir=tmp_path / "c", download=True)
    assert list(data.iterdir()) == []  # no partial or unverified file
    assert not (tmp_path / "c").exists()


def test_full_release_download_is_checked_as_a_zip_and_by_md5(tmp_path, served, monkeypatch):
    server, _ = served
    make_omniglot_zip(server, "images_evaluation", {"Aa": 1})
    with pytest.raises(ValueError, match=r"images_evaluation.zip is not the release's file: "
                       r"expected md5 6b91aef0f799c5bb55b94e3f2daec811, found"):  # fmt: skip
        load_omniglot("evaluation", tmp_path / "d", cache_dir=tmp_path / "c", download=True)
    assert list((tmp_path / "d").iterdir()) == []
    md5 = hash_file(server / "images_evaluation.zip", "md5")["md5"]
    monkeypatch.setitem(omniglot_files.KNOWN_DIGESTS, "images_evaluation", ("md5", md5))
    split = load_omniglot("evaluation", tmp_path / "d", image_size=4, cache_dir=tmp_path / "c",
                          download=True)  # fmt: skip
    assert split.class_names == ("Aa/character01",)
    (server / "images_background.zip").write_bytes(b"<html>rate limited</html>")
    with pytest.raises(ValueError, match="download of images_background.zip is not a zip archive"):
        load_omniglot("background", tmp_path / "d", cache_dir=tmp_path / "c", download=True)
    assert not (tmp_path / "d" / "images_background.zip").exists()


def test_offline_is_a_clear_connection_error(tmp_path, monkeypatch):
    def offline(url, dest):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(download_module, "fetch_url", offline)
    with pytest.raises(ConnectionError, match="could not download .*place it at"):
        load_omniglot("small2", tmp_path / "d", cache_dir=tmp_path / "c", download=True)
    assert list((tmp_path / "d").iterdir()) == []


@pytest.mark.parametrize("download", [True, False])
def test_existing_file_with_wrong_checksum_is_rejected(tmp_path, served, download):
    _, asked = served
    make_omniglot_zip(tmp_path, "images_background_small2", {"Aa": 1})
    with pytest.raises(
        ValueError,
        match=rf"{tmp_path}/images_background_small2.zip is not the Omniglot release's "
        r"images_background_small2.zip: expected sha256 3ccaa407515a8778\w+, found \w+\. "
        r"Replace it with https://github.com/brendenlake/omniglot/raw/master/python/"
        r"images_background_small2.zip",
    ):
        load_omniglot("small2", tmp_path, cache_dir=tmp_path / "c", download=download)
    assert asked == []  # present: not fetched again
    assert not (tmp_path / "c").exists()


def test_unwritable_data_dir_is_one_line_naming_the_folder(tmp_path, served, monkeypatch):
    """A read-only or full data folder: the error names the folder, not a temp file."""
    server, _ = served
    make_omniglot_zip(server, "images_background_small1", {"Aa": 2})

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache_module.tempfile, "mkstemp", read_only)
    data = tmp_path / "data"
    with pytest.raises(PermissionError) as raised:
        load_omniglot("small1", data, cache_dir=tmp_path / "c", download=True)
    assert str(raised.value) == (
        "cannot write the download of https://github.com/brendenlake/omniglot/raw/master/"
        f"python/images_background_small1.zip into {data}: Permission denied"
    )
