"""Sphinx extension for jmeta's site: API coverage, re-exports, links to the repository.

* **Every public name is documented.** The public API is ``jmeta.__all__``, followed through
  the modules it lists (``jmeta.algorithms.__all__``, ...), plus the modules in the
  ``public_modules`` setting. A public name with no entry on any page, or a public function or
  class without a docstring, is a warning (an error under ``-W``).
* **References through re-exports resolve.** ``jmeta.maml`` is documented once, under that
  name; a reference to ``maml`` from ``jmeta.algorithms``' docstring, or to
  ``jmeta.algorithms.maml.maml``, finds it by importing the name and looking the object up.
  A reference to another project's object (``jax.Array``, ``optax.GradientTransformation``)
  renders as plain code; a name that imports nowhere is reported as broken.
* **Inline code that names a documented object links to it**, so ```jmeta.maml``` in the
  README and docs/*.md becomes a link to its API entry without markup GitHub cannot show.
* **Links to repository files that are not pages** (``LICENSE``, a ``.py`` file, a results
  table) point to the file on GitHub instead of becoming downloads.
* ``.. jmeta-docstring:: module`` renders a module's docstring as prose (concept pages reuse
  the docstrings rather than copying them), and ``.. jmeta-command-help:: train`` the
  ``jmeta`` command's ``--help`` text.
* The README is the root document: the site's navigation (``site_toctrees``) is appended to it
  as it is read, and ``index.html`` forwards to it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import io
import os
import sys
import types
from contextlib import redirect_stdout
from pathlib import Path, PurePosixPath

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_id, make_refnode, nested_parse_with_titles

logger = logging.getLogger(__name__)

_MISSING = object()


# --- the public API ------------------------------------------------------------------------


def public_names(module_names: list[str]) -> dict[str, object]:
    """``{full name: object}`` for every public name, following ``__all__`` into modules.

    A module with ``__all__`` exports exactly those names; one without exports the functions
    and classes defined in it whose names do not start with an underscore.
    """
    found: dict[str, object] = {}
    pending = list(module_names)
    seen: set[str] = set()
    while pending:
        name = pending.pop(0)
        if name in seen:
            continue
        seen.add(name)
        module = importlib.import_module(name)
        found[name] = module
        if hasattr(module, "__all__"):
            exported = list(module.__all__)
        else:
            exported = [
                key
                for key, value in vars(module).items()
                if not key.startswith("_")
                and (inspect.isfunction(value) or inspect.isclass(value))
                and value.__module__ == name
            ]
        for key in exported:
            value = getattr(module, key)
            if isinstance(value, types.ModuleType):
                pending.append(value.__name__)
            else:
                found[f"{name}.{key}"] = value
    return found


def import_name(name: str) -> object:
    """The object a dotted name refers to, as ``from a.b import c`` finds it, or ``_MISSING``.

    Attributes win over submodules of the same name (``jmeta.algorithms.maml`` is the function
    that ``jmeta.algorithms`` exports), but a longer name may go through the submodule
    (``jmeta.algorithms.cavia.concat_context``).
    """
    parts = name.split(".")
    try:
        root = importlib.import_module(parts[0])
    except Exception:  # noqa: BLE001  (not a module: not a target)
        return _MISSING

    def walk(obj, i):
        if i == len(parts):
            return obj
        value = getattr(obj, parts[i], _MISSING)
        if value is _MISSING and isinstance(obj, types.ModuleType):
            try:  # a submodule not imported yet
                value = importlib.import_module(".".join(parts[: i + 1]))
            except Exception:  # noqa: BLE001  (no such module: not a target)
                value = _MISSING
        if value is not _MISSING:
            found = walk(value, i + 1)
            if found is not _MISSING:
                return found
        if isinstance(obj, types.ModuleType) and i + 1 < len(parts):
            # a submodule shadowed by an attribute of the same name
            module = sys.modules.get(".".join(parts[: i + 1]))
            if module is not None and module is not value:
                return walk(module, i + 1)
        return _MISSING

    return walk(root, 1)


def _identity_key(obj: object) -> int | None:
    # Only objects with an identity of their own: an equal string or number elsewhere is not
    # the same documented object.
    if isinstance(obj, types.ModuleType) or inspect.isclass(obj) or inspect.isroutine(obj):
        return id(obj)
    if callable(obj) and hasattr(obj, "__wrapped__"):
        return id(obj)
    return None


class Documented:
    """The documented Python objects, by name and by identity (built once per resolve phase)."""

    def __init__(self, env):
        self.objects = env.get_domain("py").objects  # name -> ObjectEntry
        self.by_id: dict[int, str] = {}
        for name, entry in self.objects.items():
            if entry.aliased:
                continue
            key = _identity_key(import_name(name))
            if key is not None:
                self.by_id.setdefault(key, name)

    def find(
        self,
        target: str,
        modname: str | None = None,
        classname: str | None = None,
        owner_module: str | None = None,
    ):
        """``(documented name or None, the object or _MISSING)`` for ``target`` as seen from
        module ``modname`` (and class ``classname``); ``owner_module`` is where the documented
        object that mentions ``target`` is defined (its annotations' names live there)."""
        target = target.removeprefix("~").removeprefix(".")
        candidates = [target]
        for module in (modname, owner_module):
            if module:
                if classname:
                    candidates.append(f"{module}.{classname}.{target}")
                candidates.append(f"{module}.{target}")
        candidates.append(f"builtins.{target}")
        found = _MISSING
        for candidate in candidates:
            if candidate in self.objects:
                return candidate, import_name(candidate)
            obj = import_name(candidate)
            if obj is _MISSING:
                continue
            key = _identity_key(obj)
            if key is not None and key in self.by_id:
                return self.by_id[key], obj
            if found is _MISSING:
                found = obj
        return None, found


def _documented(app, env) -> Documented:
    cache = getattr(env, "_jmeta_documented", None)
    if cache is None:
        cache = env._jmeta_documented = Documented(env)
    return cache


def _forget_documented(app, env, *args):
    env._jmeta_documented = None


def check_public_api(app, env) -> None:
    """Warn for every public name that no page documents, or that has no docstring."""
    documented = Documented(env)
    names = public_names(app.config.public_modules)
    for name, obj in sorted(names.items()):
        where = documented.objects.get(name)
        if where is None:
            key = _identity_key(obj)
            alias = documented.by_id.get(key) if key is not None else None
            if alias is None or not _is_reexport(name, alias, obj):
                logger.warning(
                    "public name %s is not documented on any page (add it to docs/api/)",
                    name,
                    type="jmeta",
                    subtype="undocumented",
                )
                continue
        if (inspect.isroutine(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj):
            logger.warning("public name %s has no docstring", name, type="jmeta", subtype="nodoc")


def _is_reexport(name: str, documented_as: str, obj: object) -> bool:
    # jmeta.algorithms.maml is the object documented as jmeta.maml: one entry serves both.
    return documented_as.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1] or isinstance(
        obj, types.ModuleType
    )


# --- references ------------------------------------------------------------------------------


def resolve_missing(app, env, node, contnode):
    """Resolve a Python reference through re-exports; plain code for other projects' names."""
    if node.get("refdomain") != "py":
        return None
    documented = _documented(app, env)
    target = node["reftarget"]
    name, obj = documented.find(
        target, node.get("py:module"), node.get("py:class"), _owner_module(node)
    )
    if name is not None:
        entry = documented.objects[name]
        return make_refnode(
            app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name
        )
    ours = {name.split(".")[0] for name in app.config.public_modules}
    if obj is not _MISSING and _module_of(obj).split(".")[0] not in ours:
        return contnode  # another project's object (no network: no intersphinx)
    top = target.removeprefix("~").removeprefix(".").split(".")[0]
    if obj is _MISSING and top not in ours and "." in target and _importable(top):
        return contnode  # a private path of another project's type (jax.jaxlib._jax.Array)
    return None  # not found, or an undocumented object of ours: Sphinx reports it (nitpicky)


def _module_of(obj) -> str:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        module = type(obj).__module__
    return module


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _owner_module(node) -> str | None:
    """The module defining the documented object whose entry contains ``node``."""
    parent = node.parent
    while parent is not None and not isinstance(parent, addnodes.desc):
        parent = parent.parent
    if parent is None:
        return None
    for sig in parent.findall(addnodes.desc_signature):
        module, fullname = sig.get("module"), sig.get("fullname")
        if module and fullname:
            obj = import_name(f"{module}.{fullname}")
            if obj is not _MISSING:
                return _module_of(obj)
        break
    return None


class LinkInlineCode(SphinxPostTransform):
    """``jmeta.maml`` (or ``jmeta.maml(...)``) in inline code links to its API entry."""

    default_priority = 5  # before references are resolved

    def run(self, **kwargs) -> None:
        documented = _documented(self.app, self.env)
        for literal in list(self.document.findall(nodes.literal)):
            if _inside_reference(literal):
                continue
            text = literal.astext()
            name = text.split("(", 1)[0]
            if (
                not name.startswith("jmeta.")
                or not name.replace(".", "").replace("_", "").isalnum()
            ):
                continue
            if "(" in text and not text.endswith(")"):
                continue
            target, _ = documented.find(name)
            if target is None:
                continue
            entry = documented.objects[target]
            if entry.docname == self.env.docname and _same_entry(literal, entry.node_id):
                continue
            ref = make_refnode(
                self.app.builder,
                self.env.docname,
                entry.docname,
                entry.node_id,
                literal.deepcopy(),
                target,
            )
            literal.replace_self(ref)


def _inside_reference(node) -> bool:  # or a title: a heading is not a link
    parent = node.parent
    while parent is not None:
        if isinstance(
            parent,
            nodes.reference | addnodes.pending_xref | addnodes.desc_signature | nodes.title,
        ):
            return True
        parent = parent.parent
    return False


def _same_entry(node, node_id: str) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, addnodes.desc) and any(
            node_id in sig.get("ids", []) for sig in parent.findall(addnodes.desc_signature)
        ):
            return True
        parent = parent.parent
    return False


class RepositoryLinks(SphinxTransform):
    """A Markdown link to a repository file that is not a page points to it on GitHub.

    MyST turns such a link into a download (a file that is not a document) or into a
    reference to an unknown document (a Markdown file outside the site's pages).
    """

    default_priority = 210

    def apply(self, **kwargs) -> None:
        for node in list(self.document.findall(addnodes.download_reference)):
            if node.get("reftype") == "myst":
                self._to_repository(node, node["reftarget"])
        for node in list(self.document.findall(addnodes.pending_xref)):
            if (
                node.get("reftype") == "myst"
                and node.get("refdomain") == "doc"
                and node["reftarget"] not in self.env.found_docs
            ):
                path = _source_file(Path(self.env.srcdir), node["reftarget"], self.config)
                if path is None:
                    continue
                docdir = Path(self.env.srcdir, self.env.docname).parent
                relative = os.path.relpath(path, docdir)
                anchor = node.get("reftargetid")
                self._to_repository(node, relative + (f"#{anchor}" if anchor else ""))

    def _to_repository(self, node, target: str) -> None:
        # target: relative to the current document, with an optional #anchor
        srcdir = Path(self.env.srcdir)
        path_part, _, anchor = target.partition("#")
        docdir = PurePosixPath(self.env.docname).parent
        path = Path(os.path.normpath(srcdir / docdir / path_part))
        try:
            relative = path.relative_to(srcdir).as_posix()
        except ValueError:
            return  # outside the repository: leave it to Sphinx (a warning)
        if not path.exists():
            return
        kind = "tree" if path.is_dir() else "blob"
        base = self.config.repository_url.rstrip("/")
        url = f"{base}/{kind}/{self.config.repository_branch}/{relative}"
        ref = nodes.reference("", "", internal=False, refuri=url + (f"#{anchor}" if anchor else ""))
        ref += node.children
        node.replace_self(ref)


def _source_file(srcdir: Path, docname: str, config) -> Path | None:
    for suffix in config.source_suffix:
        path = srcdir / f"{docname}{suffix}"
        if path.is_file():
            return path
    return None


# --- directives ------------------------------------------------------------------------------


class ModuleDocstring(SphinxDirective):
    """``.. jmeta-docstring:: jmeta.inner``: a module's docstring, as reStructuredText.

    ``:skip-title:`` leaves out its summary (the first paragraph); ``:section: Title`` keeps
    only the body of that section of the docstring; ``:target:`` makes this the place that
    ``:mod:`jmeta.inner``` links to (once per module on the whole site).
    """

    required_arguments = 1
    option_spec = {
        "skip-title": directives.flag,
        "section": directives.unchanged_required,
        "target": directives.flag,
    }

    def run(self):
        name = self.arguments[0]
        module = importlib.import_module(name)
        text = inspect.cleandoc(module.__doc__ or "")
        if not text:
            raise self.error(f"module {name} has no docstring")
        lines = text.splitlines()
        if "skip-title" in self.options:  # the summary: the first paragraph
            lines = lines[lines.index("") + 1 :] if "" in lines else []
        if "section" in self.options:
            lines = _section(lines, self.options["section"])
            if lines is None:
                raise self.error(f"no section {self.options['section']!r} in {name}'s docstring")
        container = nodes.container(classes=["jmeta-docstring"])
        result = []
        if "target" in self.options:
            node_id = make_id(self.env, self.state.document, "module", name)
            target = nodes.target("", "", ids=[node_id], ismod=True)
            self.set_source_info(target)
            self.state.document.note_explicit_target(target)
            domain = self.env.get_domain("py")
            domain.note_module(name, node_id, "", "", False)
            domain.note_object(name, "module", node_id, location=target)
            result.append(target)
        saved = self.env.ref_context.get("py:module")
        self.env.ref_context["py:module"] = name  # :func:`x` in it means name.x
        try:
            content = StringList(lines, source=f"docstring of {name}")
            nested_parse_with_titles(self.state, content, container)
        finally:
            if saved is None:
                self.env.ref_context.pop("py:module", None)
            else:
                self.env.ref_context["py:module"] = saved
        return result + container.children


def _is_underline(line: str, title: str) -> bool:
    line = line.rstrip()
    return (
        bool(title.strip())
        and len(set(line)) == 1
        and line[0] in "=-~^\"'`#*+"
        and (len(line) >= len(title.rstrip()))
    )


def _section(lines: list[str], title: str) -> list[str] | None:
    """The lines of the section titled ``title`` (without its title), up to the next title."""
    for i in range(len(lines) - 1):
        if lines[i].strip() == title and _is_underline(lines[i + 1], lines[i]):
            mark = lines[i + 1].strip()[0]
            end = len(lines)
            for j in range(i + 2, len(lines) - 1):
                if _is_underline(lines[j + 1], lines[j]) and lines[j + 1].strip()[0] == mark:
                    end = j
                    break
            return lines[i + 2 : end]
    return None


class CommandHelp(SphinxDirective):
    """``.. jmeta-command-help:: train``: the ``--help`` text of a ``jmeta`` subcommand."""

    optional_arguments = 1

    def run(self):
        from jmeta.cli import build_parser

        argv = [*self.arguments, "--help"]
        out = io.StringIO()
        columns = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "80"
        try:
            with redirect_stdout(out):
                build_parser().parse_args(argv)
        except SystemExit:
            pass
        finally:
            if columns is None:
                os.environ.pop("COLUMNS")
            else:
                os.environ["COLUMNS"] = columns
        text = out.getvalue().rstrip()
        block = nodes.literal_block(text, text, language="text")
        return [block]


# --- the landing page ----------------------------------------------------------------------


def add_navigation(app, docname: str, source: list[str]) -> None:
    if docname != app.config.root_doc:
        return
    parts = []
    for caption, entries in app.config.site_toctrees.items():
        body = "\n".join(entries)
        parts.append(f"\n\n```{{toctree}}\n:hidden:\n:caption: {caption}\n\n{body}\n```\n")
    source[0] += "".join(parts)


def write_index(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    root = app.config.root_doc + app.builder.out_suffix
    if root == "index.html":
        return
    html = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0; url={root}">'
        f'<link rel="canonical" href="{root}"><title>jmeta</title></head>'
        f'<body><p><a href="{root}">jmeta documentation</a></p></body></html>\n'
    )
    Path(app.outdir, "index.html").write_text(html)


def setup(app):
    app.add_config_value("site_toctrees", {}, "env", types=[dict])
    app.add_config_value("public_modules", ["jmeta"], "env", types=[list])
    app.add_config_value("repository_url", "", "env", types=[str])
    app.add_config_value("repository_branch", "main", "env", types=[str])
    app.connect("source-read", add_navigation)
    app.connect("env-check-consistency", check_public_api)
    app.connect("env-updated", _forget_documented)
    app.connect("missing-reference", resolve_missing)
    app.connect("build-finished", write_index)
    app.add_transform(RepositoryLinks)
    app.add_post_transform(LinkInlineCode)
    app.add_directive("jmeta-docstring", ModuleDocstring)
    app.add_directive("jmeta-command-help", CommandHelp)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
