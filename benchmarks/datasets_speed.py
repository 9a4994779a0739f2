"""How long Omniglot takes to load: first decode of the real minimal zips, then from cache.

Decodes ``images_background_small1.zip`` and ``images_background_small2.zip``
(5,840 PNGs of 105x105) to 28x28 uint8 arrays into an empty cache, then loads
the same data (and a derived split) from the cache. Each timing is the best
of ``--repeats`` runs, with a fresh cache folder for every first-decode run.
Prints a markdown table and writes it to ``benchmarks/results/datasets_speed.md``.

Run from the repository root:

    PYTHONPATH=$PWD python benchmarks/datasets_speed.py
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.machine import describe

REPO = Path(__file__).resolve().parents[1]


def _omniglot_dir() -> Path:
    env = os.environ.get("JMETA_OMNIGLOT_DIR")
    return Path(env) if env else (REPO / ".." / "shared" / "data" / "omniglot").resolve()


def _time(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/datasets_speed.md")
    args = parser.parse_args()

    from jmeta.datasets import load_omniglot

    data_dir = _omniglot_dir()
    rows = []
    load_before = os.getloadavg()[0]

    def first_decode(num_workers: int) -> None:
        with tempfile.TemporaryDirectory() as cache:
            for source in ("small1", "small2"):
                load_omniglot(source, data_dir, cache_dir=cache, num_workers=num_workers)

    for workers, label in ((0, "in-process"), (2, "2 worker processes")):
        times = _time(functools.partial(first_decode, workers), args.repeats)
        rows.append((f"first load, decode 5,840 PNGs + write cache ({label})", times))

    with tempfile.TemporaryDirectory() as cache:

        def both() -> None:
            for source in ("small1", "small2"):
                load_omniglot(source, data_dir, cache_dir=cache)

        both()  # fills the cache
        rows.append(("cached reload of small1 + small2", _time(both, args.repeats)))
        rows.append(
            (
                "cached `minimal-train` (pool, dedupe, select)",
                _time(
                    lambda: load_omniglot("minimal-train", data_dir, cache_dir=cache), args.repeats
                ),
            )
        )

    lines = [
        "# Omniglot loading speed",
        "",
        f"Machine: {describe()}.",
        f"Data: `images_background_small1.zip` + `images_background_small2.zip` "
        f"(292 characters x 20 drawers), decoded to 28x28 uint8. Best and median of "
        f"{args.repeats} runs. 1-minute load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after the run (above the CPU count means other work "
        "shared the machine and the numbers are pessimistic).",
        "",
        "| step | best (s) | median (s) |",
        "| --- | ---: | ---: |",
    ]
    for name, times in rows:
        lines.append(f"| {name} | {min(times):.3f} | {statistics.median(times):.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
