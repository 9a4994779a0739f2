"""Timing and peak-memory helpers, and a runner that isolates each peer.

Peak memory, by device:
  * CUDA + PyTorch: ``torch.cuda.max_memory_allocated`` (allocator peak).
  * GPU + JAX: ``device.memory_stats()["peak_bytes_in_use"]``.
  * CPU: the process's peak resident set size from ``getrusage``. That figure
    is per process and never goes down, so it includes everything the process
    ever held (interpreter, imported frameworks, earlier peers). Only a fresh
    process per peer gives a meaningful number: use :func:`run_isolated`,
    which also keeps PyTorch's and XLA's thread pools from competing.

Importing this module imports neither PyTorch nor JAX.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
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


def torch_reset_peak(device: Any) -> None:
    """Reset PyTorch's CUDA peak counter (no-op on CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def torch_peak_bytes(device: Any) -> int | None:
    """``torch.cuda.max_memory_allocated`` on CUDA, ``None`` on CPU."""
    import torch

    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None


def footprint_bytes(compiled: Any) -> int:
    """Arguments + outputs + temporaries - donated aliases, from XLA's memory analysis."""
    m = compiled.memory_analysis()
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


def jax_peak_bytes(device: Any) -> int | None:
    """``peak_bytes_in_use`` of a JAX device, ``None`` where not reported (CPU)."""
    stats = device.memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return int(stats["peak_bytes_in_use"])


def run_isolated(
    peer: str,
    workload: str,
    batch_size: int,
    *,
    inner_steps: int | None = None,
    first_order: bool | None = None,
    device: str | None = None,
    dtype: str = "float32",
    warmup: int = 3,
    repeats: int = 10,
    seed: int = 0,
    threads: int | None = None,
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
) -> dict[str, Any]:
    """Run one peer in a fresh ``python -m benchmarks.peers.run_one`` process.

    Returns the child's JSON record (``status`` is ``"ok"``, ``"skipped"``,
    ``"oom"`` or ``"error"``); a child that crashes or times out yields an
    ``"error"`` record with the tail of its stderr.
    """
    cmd = [
        python, "-m", "benchmarks.peers.run_one",
        "--peer", peer, "--workload", workload, "--batch", str(batch_size),
        "--dtype", dtype, "--warmup", str(warmup), "--repeats", str(repeats),
        "--seed", str(seed), "--json",
    ]  # fmt: skip
    if inner_steps is not None:
        cmd += ["--inner-steps", str(inner_steps)]
    if first_order is not None:
        cmd += ["--first-order" if first_order else "--no-first-order"]
    if device is not None:
        cmd += ["--device", device]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")])
    )
    base = {"peer": peer, "workload": workload, "batch_size": batch_size}
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, env=child_env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {**base, "status": "error", "error": f"timed out after {timeout_s} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    return {**base, "status": "error", "error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
