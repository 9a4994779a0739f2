"""Sphinx configuration of the jmeta documentation site.

The site is the repository rendered as it is: the source directory is the repository root
(this folder is only the configuration directory), so the README is the landing page and every
relative link between the Markdown files, the notebooks and benchmarks/RESULTS.md resolves on
the site exactly as it does on GitHub. Build it (CONTRIBUTING.md, "Documentation site"):

    sphinx-build -E -W --keep-going -n -c docs . docs/_build/html

The extension docs/_ext/jmeta_sphinx.py adds what Sphinx lacks: every public name must be
documented, references through re-exports resolve, inline code naming a documented object
links to it, and links to repository files that are not pages point to GitHub.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(REPO))  # document this checkout, installed or not

import jmeta  # noqa: E402

project = "jmeta"
author = "The jmeta authors"
copyright = "The jmeta authors (Apache-2.0)"
release = version = jmeta.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_nb",  # Markdown (myst-parser) and notebooks, rendered with their saved outputs
    "jmeta_sphinx",
]

# The pages: everything else in the repository is not part of the site.
root_doc = "README"
include_patterns = [
    "README.md",
    "CHANGELOG.md",
    "CONTRIBUTING.md",
    "docs/**.md",
    "docs/**.rst",
    "colab/*.ipynb",
    "benchmarks/RESULTS.md",
]
# Folders the build never needs to look into (it walks the repository for the patterns above).
exclude_patterns = [
    "docs/_build",
    ".venv*",
    ".git",
    "runs",
    "build",
    "dist",
    ".jmeta_cache",
    "**/__pycache__",
    "**/.ipynb_checkpoints",
    "**/.pytest_cache",
]

# The navigation (the landing page is the README, which must read well on GitHub too, so the
# extension appends these toctrees to it when Sphinx reads it; it adds nothing to the file).
site_toctrees = {
    "Start": [
        "Getting started <docs/getting_started>",
        "colab/01_quickstart",
        "colab/02_omniglot",
        "colab/03_custom_model_and_algorithm",
        "colab/04_throughput",
    ],
    "Concepts": [
        "docs/concepts/metalearner",
        "docs/algorithms",
        "docs/concepts/inner_loop",
        "docs/concepts/meta_steps",
        "docs/concepts/evaluation",
        "docs/concepts/batch_norm",
        "Data sets and splits <docs/datasets>",
        "The trainer and its run folders <docs/training>",
        "docs/scaling",
        "docs/concepts/mixed_precision",
    ],
    "API reference": [
        "docs/api/jmeta",
        "docs/api/algorithms",
        "docs/api/models",
        "docs/api/tasks",
        "docs/api/datasets",
        "docs/api/losses",
        "docs/api/params",
        "docs/api/parallel",
        "docs/api/precision",
        "docs/api/train",
        "docs/api/cli",
    ],
    "Project": ["Benchmark results <benchmarks/RESULTS>", "CHANGELOG", "CONTRIBUTING"],
}

# The public API: jmeta.__all__, recursively through the modules it lists, and the trainer.
# Each name must be documented on one of the pages, or the build fails.
public_modules = ["jmeta", "jmeta.train"]
repository_url = "https://github.com/jmeta-dev/jmeta"
repository_branch = "main"

# Warnings are errors (-W on the command line); nitpicky (-n) also reports every reference
# that does not resolve. References to other projects' objects (jax.Array, optax transforms)
# render as plain code: there is no intersphinx, since the build never touches the network.
nitpicky = True

autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # NamedTuple fields: listed in the class entry, not as members
python_use_unqualified_type_names = True
autosummary_generate = False  # tables only; every entry is written out on its page
toc_object_entries_show_parents = "hide"

# MyST: GitHub-style heading anchors, so docs/x.md#a-heading works on GitHub and here.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath", "colon_fence"]
suppress_warnings = ["myst.header"]  # notebooks may start at any heading level

# Notebooks are rendered with the outputs saved in them, never executed here (CI runs them in
# tests/test_notebooks.py).
nb_execution_mode = "off"
nb_merge_streams = True

html_theme = "furo"
html_title = f"jmeta {version}"
html_static_path: list[str] = []
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {
    "source_repository": repository_url + "/",
    "source_branch": repository_branch,
    "source_directory": "",
    "top_of_page_buttons": ["view"],
}
