"""Fixtures for the data set tests: real Omniglot zips and tiny synthetic sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL_ZIPS = ("images_background_small1.zip", "images_background_small2.zip")


def real_omniglot_dir() -> Path:
    """``$JMETA_OMNIGLOT_DIR``, else ``<repo>/../shared/data/omniglot``."""
    env = os.environ.get("JMETA_OMNIGLOT_DIR")
    return Path(env) if env else (REPO / ".." / "shared" / "data" / "omniglot").resolve()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test writes to the user's cache, or reads Omniglot from the environment."""
    monkeypatch.setenv("JMETA_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.delenv("JMETA_OMNIGLOT_DIR", raising=False)


@pytest.fixture(scope="session")
def omniglot_dir() -> Path:
    root = real_omniglot_dir()
    missing = [z for z in SMALL_ZIPS if not (root / z).is_file()]
    if missing:
        pytest.skip(f"real Omniglot zips {missing} not in {root} (set JMETA_OMNIGLOT_DIR)")
    return root


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory, omniglot_dir) -> Path:
    """A cache folder in which both small zips were decoded once at 28x28."""
    from jmeta.datasets.omniglot_files import load_source

    cache = tmp_path_factory.mktemp("omniglot-cache")
    for source in ("small1", "small2"):
        load_source(source, data_dir=omniglot_dir, image_size=28, cache_dir=cache)
    return cache
