"""Check the built site's links: every local page, file and anchor they point to exists.

Usage: python docs/check_html.py docs/_build/html

Reads every .html file under the folder and checks each ``href`` and ``src``:

* a relative link must name a file that exists in the built site;
* a ``#fragment`` must be an ``id`` (or ``<a name>``) in the page it points to;
* a link to this repository on GitHub (``<repository>/blob/<branch>/PATH``, what the site uses
  for files that are not pages) must name a file or folder of the repository.

Links to other sites are not followed (the check runs without a network). Exits with status 1
and one line per broken link if anything is missing. Pure Python: no browser needed.
"""

from __future__ import annotations

import argparse
import html.parser
import posixpath
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPOSITORY = "https://github.com/jmeta-dev/jmeta/"
REPO_ROOT = Path(__file__).resolve().parent.parent


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[int, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id",) + (("name",) if tag == "a" else ()):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and attrs.get("rel") in ("preconnect",)):
                self.links.append((self.getpos()[0], attrs[key]))


def check_site(site: Path, repo_root: Path = REPO_ROOT) -> list[str]:
    """Every broken link under ``site``, as ``'page:line: link: why'`` lines."""
    site = site.resolve()
    pages: dict[Path, _Page] = {}
    for path in sorted(site.rglob("*.html")):
        page = _Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        pages[path] = page
    if not pages:
        return [f"{site}: no HTML files (was the site built?)"]
    errors = []
    for path, page in pages.items():
        where = path.relative_to(site).as_posix()
        for line, link in page.links:
            problem = _check_link(site, path, link, pages, repo_root)
            if problem:
                errors.append(f"{where}:{line}: {link}: {problem}")
    return errors


def _check_link(site: Path, page: Path, link: str, pages, repo_root: Path) -> str | None:
    parts = urlsplit(link)
    if link.startswith(REPOSITORY):
        return _check_repository_link(link[len(REPOSITORY) :], repo_root)
    if parts.scheme or link.startswith("//"):
        return None  # another site (http, https, mailto, data, javascript)
    if not parts.path:
        target = page
    else:
        target = Path(
            posixpath.normpath(posixpath.join(page.parent.as_posix(), unquote(parts.path)))
        )
        if not target.is_relative_to(site):
            return "points outside the site"
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            return "no such file in the built site"
    fragment = unquote(parts.fragment)
    if fragment and target.suffix == ".html":
        if target not in pages:
            return "fragment into a page that is not HTML"
        if fragment not in pages[target].ids:
            return f"no anchor #{fragment} in {target.relative_to(site).as_posix()}"
    return None


def _check_repository_link(rest: str, repo_root: Path) -> str | None:
    # blob/<branch>/<path>[#anchor] or tree/<branch>/<path>; other GitHub pages are not checked.
    kind, _, rest = rest.partition("/")
    if kind not in ("blob", "tree"):
        return None
    _branch, _, path = rest.partition("/")
    path = unquote(urlsplit(path).path)
    if not path or not (repo_root / path).exists():
        return f"no {path or '(empty path)'} in the repository"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built HTML folder")
    args = parser.parse_args(argv)
    if not args.site.is_dir():
        print(f"check_html: no folder {args.site}", file=sys.stderr)
        return 2
    errors = check_site(args.site)
    for error in errors:
        print(error)
    count = len(list(args.site.rglob("*.html")))
    print(f"check_html: {count} pages, {len(errors)} broken links", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
