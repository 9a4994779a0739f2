"""Make the repository's top-level ``benchmarks`` package importable in tests.

``benchmarks/`` is not part of the installed wheel, so put the repository
root on ``sys.path`` for this test directory.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
