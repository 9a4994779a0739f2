"""Trainer tests never write to the user's cache or read Omniglot from the environment."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JMETA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JMETA_OMNIGLOT_DIR", raising=False)
