"""The documentation site's checks fail when they should, and its getting-started page is true.

The site itself is built in CI (.ci/run: sphinx-build -W, then docs/check_html.py); these tests
show that the checks it relies on catch what they claim to catch. The Sphinx builds here need
the ``docs`` extra and are skipped without it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def load_check_html():
    spec = importlib.util.spec_from_file_location("check_html", DOCS / "check_html.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- docs/check_html.py ------------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_link_checker_accepts_a_consistent_site(tmp_path):
    check_html = load_check_html()
    site = tmp_path / "site"
    write(
        site / "index.html",
        """<html><body><h1 id="top">x</h1>
        <a href="docs/a.html#usage">a</a> <a href="#top">top</a> <img src="_images/p.png">
        <a href="https://example.com/missing">elsewhere</a>
        <a href="https://github.com/jmeta-dev/jmeta/blob/main/jmeta/cli.py">source</a>
        <a href="https://github.com/jmeta-dev/jmeta/tree/main/docs">docs folder</a>
        </body></html>""",
    )
    write(site / "docs/a.html", '<section id="usage"><a href="../index.html">up</a></section>')
    write(site / "_images/p.png", "png")
    assert check_html.check_site(site, REPO) == []


def test_link_checker_reports_missing_pages_anchors_and_repository_files(tmp_path):
    check_html = load_check_html()
    site = tmp_path / "site"
    write(
        site / "index.html",
        """<html><body>
        <a href="docs/gone.html">missing page</a>
        <a href="docs/a.html#nowhere">missing anchor</a>
        <a href="#nor-here">missing local anchor</a>
        <img src="_images/none.png">
        <a href="https://github.com/jmeta-dev/jmeta/blob/main/jmeta/no_such_file.py">x</a>
        <a href="../../outside.html">outside</a>
        </body></html>""",
    )
    write(site / "docs/a.html", '<p id="usage">a</p>')
    errors = check_html.check_site(site, REPO)
    assert len(errors) == 6, errors
    joined = "\n".join(errors)
    assert "docs/gone.html: no such file in the built site" in joined
    assert "no anchor #nowhere in docs/a.html" in joined
    assert "no anchor #nor-here in index.html" in joined
    assert "_images/none.png: no such file" in joined
    assert "no jmeta/no_such_file.py in the repository" in joined
    assert "points outside the site" in joined


def test_link_checker_command_exits_nonzero_on_a_broken_link(tmp_path, capsys):
    check_html = load_check_html()
    write(tmp_path / "index.html", '<a href="gone.html">x</a>')
    assert check_html.main([str(tmp_path)]) == 1
    assert "index.html:1: gone.html: no such file in the built site" in capsys.readouterr().out
    assert check_html.main([str(tmp_path / "nothing")]) == 2


# --- the Sphinx extension (docs/_ext/jmeta_sphinx.py) ------------------------------------------

FAKE_PACKAGE = {
    "fakepkg/__init__.py": '''
        """A package with two public functions."""
        from fakepkg.impl import helper, shown

        __all__ = ["shown", "helper"]
        ''',
    "fakepkg/impl.py": '''
        """Where the functions are defined."""


        def shown(x):
            """Documented on the index page; see :func:`helper` (a re-export).

            Args:
              x: a number, compared with :class:`numpy.ndarray` (another project's name).

            Returns:
              ``x``.
            """
            return x


        def helper():
            """Helps."""
        ''',
}


def sphinx_build(tmp_path: Path, index: str, public: list[str]) -> subprocess.CompletedProcess:
    pytest.importorskip("sphinx", reason="the docs extra (pip install -e '.[docs]') is absent")
    for name, text in FAKE_PACKAGE.items():
        write(tmp_path / "pkg" / name, text)
    write(tmp_path / "src" / "index.rst", index)
    write(
        tmp_path / "src" / "conf.py",
        f"""
        import sys
        sys.path[:0] = [{str(tmp_path / "pkg")!r}, {str(DOCS / "_ext")!r}]
        extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "jmeta_sphinx"]
        public_modules = {public!r}
        repository_url = "https://github.com/jmeta-dev/jmeta"
        nitpicky = True
        """,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html"]
        + [str(tmp_path / "src"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_sphinx_build_passes_and_links_reexports_and_inline_code(tmp_path):
    index = """
        Fake
        ====

        .. automodule:: fakepkg
           :no-members:

        Call ``fakepkg.helper`` or :func:`fakepkg.impl.shown`.

        .. autofunction:: fakepkg.shown
        .. autofunction:: fakepkg.helper
        """
    result = sphinx_build(tmp_path, index, ["fakepkg"])
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "out" / "index.html").read_text()
    # The inline code and the reference through the defining module both link to the entries.
    assert re.search(r'<a class="reference internal" href="#fakepkg.helper"[^>]*><code', html)
    assert html.count('href="#fakepkg.shown"') >= 1
    assert html.count('href="#fakepkg.helper"') >= 2  # also from shown's docstring


def test_sphinx_build_fails_on_undocumented_name_and_broken_reference(tmp_path):
    index = """
        Fake
        ====

        .. automodule:: fakepkg
           :no-members:

        See :func:`fakepkg.no_such_function`.

        .. autofunction:: fakepkg.shown
        """
    result = sphinx_build(tmp_path, index, ["fakepkg"])
    assert result.returncode != 0
    assert "public name fakepkg.helper is not documented on any page" in result.stderr
    assert "py:func reference target not found: fakepkg.no_such_function" in result.stderr
    assert "fakepkg.shown is not documented" not in result.stderr


# --- docs/getting_started.md -------------------------------------------------------------------

GETTING_STARTED = (DOCS / "getting_started.md").read_text()


def test_getting_started_commands_parse():
    from jmeta.cli import build_parser

    commands = [
        line
        for block in re.findall(r"```sh\n(.*?)```", GETTING_STARTED, flags=re.DOTALL)
        for line in block.splitlines()
        if line.startswith("jmeta ")
    ]
    assert len(commands) >= 3
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])  # exits (a test error) on a bad flag
        assert args.command == "train"


def test_getting_started_data_snippet_loads_the_minimal_split(monkeypatch, tmp_path):
    env = os.environ.get("JMETA_OMNIGLOT_DIR")
    root = Path(env) if env else (REPO / ".." / "shared" / "data" / "omniglot").resolve()
    needed = ["images_background_small1.zip", "images_background_small2.zip"]
    if not all((root / name).exists() for name in needed):
        pytest.skip(f"real Omniglot zips not in {root} (set JMETA_OMNIGLOT_DIR)")
    (block,) = re.findall(r"```python\n(.*?)```", GETTING_STARTED, flags=re.DOTALL)
    assert 'data_dir="data/omniglot"' in block
    monkeypatch.setenv("JMETA_CACHE", str(tmp_path / "cache"))
    # The zips are there, so download=True fetches nothing (no network in tests).
    code = block.replace('data_dir="data/omniglot"', f"data_dir={str(root)!r}")
    namespace: dict = {}
    exec(compile(code, "docs/getting_started.md", "exec"), namespace)
    split = namespace["jmeta"].datasets.load("omniglot", "minimal-train", data_dir=root)
    assert split.images.shape[:2] == (161, 20)  # the minimal-train characters, 20 drawers each
