"""Timing and peak-memory helpers.

Peak memory (``benchmarks/throughput.py`` measures PyTorch's on a GPU with
``torch.cuda.max_memory_allocated``):
  * JAX: :func:`footprint_bytes`, XLA's compiled memory analysis of a step.
  * CPU: the process's peak resident set size from ``getrusage``. That figure
    is per process and never goes down, so it includes everything the process
    ever held (interpreter, imported frameworks, earlier peers). Only a fresh
    process per peer gives a meaningful number (``benchmarks/throughput.py``
    runs one per case on a CPU), which also keeps PyTorch's and XLA's thread
    pools from competing.

Importing this module imports neither PyTorch nor JAX.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


def time_step(step_fn: Callable[[], None], warmup: int = 3, repeats: int = 10) -> dict[str, float]:
    """Time a synchronised ``step_fn``.

    The first call (compilation for JAX, allocator and kernel warm-up for
    PyTorch) is timed on its own; ``warmup - 1`` more untimed calls follow,
    then ``repeats`` individually timed calls.

    Returns:
      ``median_ms``, ``p10_ms``, ``p90_ms``, ``mean_ms`` over the repeats and
      ``compile_or_first_call_s``.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    start = time.perf_counter()
    step_fn()
    first_call_s = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        step_fn()
    times_ms = []
    for _ in range(repeats):
        start = time.perf_counter()
        step_fn()
        times_ms.append((time.perf_counter() - start) * 1e3)
    samples = np.asarray(times_ms)
    return {
        "median_ms": float(np.median(samples)),
        "p10_ms": float(np.percentile(samples, 10)),
        "p90_ms": float(np.percentile(samples, 90)),
        "mean_ms": float(np.mean(samples)),
        "compile_or_first_call_s": first_call_s,
    }


def process_peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (monotone, per process)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # Linux: KiB


def footprint_bytes(compiled: Any) -> int:
    """Arguments + outputs + temporaries - donated aliases, from XLA's memory analysis."""
    m = compiled.memory_analysis()
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )
