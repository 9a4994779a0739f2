#!/usr/bin/env bash
# The release package works on its own: build the sdist and the wheel (the wheel from the
# sdist, as `python -m build` does), install the wheel -- not this checkout -- into a fresh
# virtualenv, and from a folder with no repository beside it import every module of the
# package, check `jmeta --version`, and run `jmeta train --num-steps 200`. A file missing from
# the sdist or the wheel fails here. Needs `build` (pip install build) in the calling Python.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python -m build --outdir "$work/dist" "$repo"
sdists=("$work"/dist/jmeta-*.tar.gz)
wheels=("$work"/dist/jmeta-*-py3-none-any.whl)
[ "${#sdists[@]}" -eq 1 ] && [ -f "${sdists[0]}" ] && [ "${#wheels[@]}" -eq 1 ] && [ -f "${wheels[0]}" ]
version="$(basename "${wheels[0]}" | cut -d- -f2)"

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "${wheels[0]}"

mkdir "$work/elsewhere"
cd "$work/elsewhere"
unset PYTHONPATH
"$work/venv/bin/python" - "$work/venv" "$version" <<'PY'
import importlib
import pkgutil
import sys
from pathlib import Path

venv, version = Path(sys.argv[1]).resolve(), sys.argv[2]
import jmeta

where = Path(jmeta.__file__).resolve()
assert where.is_relative_to(venv), f"jmeta imported from {where}, not from the wheel in {venv}"
assert jmeta.__version__ == version, (jmeta.__version__, version)
modules = [m.name for m in pkgutil.walk_packages(jmeta.__path__, "jmeta.")]
for name in modules:
    importlib.import_module(name)
for module in ["jmeta", *modules]:
    for name in getattr(sys.modules[module], "__all__", []):
        getattr(sys.modules[module], name)  # every public name resolves
print(f"wheel: jmeta {version} from {where.parent}: {len(modules) + 1} modules import")
PY
test "$("$work/venv/bin/jmeta" --version)" = "jmeta $version"
"$work/venv/bin/jmeta" train --num-steps 200 --no-progress
ls runs/*/results.json > /dev/null
echo "wheel: jmeta train --num-steps 200 ran from the installed wheel"
