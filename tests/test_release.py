"""The package's version lives in one place, and its metadata and README agree with it.

That the wheel works without the repository beside it is checked by .ci/check_wheel.sh (CI).
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

import jmeta
from jmeta.cli import main

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_version_has_one_source():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "jmeta/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", jmeta.__version__)
    # The installed metadata is read from that file (reinstall after changing the version).
    assert importlib.metadata.version("jmeta") == jmeta.__version__


def test_jmeta_version_prints_the_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"jmeta {jmeta.__version__}\n"


def test_changelog_has_a_section_for_this_version():
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(jmeta.__version__)}\b", changelog, flags=re.MULTILINE)


def test_readme_lists_every_optional_extra_once():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Optional extras") : readme.index("## Use it as a library")]
    listed = re.findall(r"^- `([a-z0-9-]+)`:", section, flags=re.MULTILINE)
    assert sorted(listed) == sorted(PYPROJECT["project"]["optional-dependencies"])


def test_metadata_is_complete():
    project = PYPROJECT["project"]
    for field in ("description", "readme", "license", "requires-python", "authors", "keywords"):
        assert project.get(field), field
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= set(project["urls"])
    minimum = re.fullmatch(r">=3\.(\d+)", project["requires-python"]).group(1)
    versions = [
        c.rsplit(".", 1)[-1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert versions and min(map(int, versions)) == int(minimum)
    assert project["scripts"]["jmeta"] == "jmeta.cli:main"
