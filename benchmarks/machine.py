"""Where a benchmark ran: the one description of the machine, and result-file names.

The description is the package's own (:mod:`jmeta.train.machine`, which
``jmeta train`` records with every run), with the benchmarks' extras: the
versions of the peers' packages, the commit, and result-file names
(:func:`result_stem`: ``<what>_<machine>_<date>``), so that a reader of
``RESULTS.md`` knows which machine, software, day and load each number comes
from. Nothing here imports JAX or PyTorch at module level: a script may pin
its threads first.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "torch")


def cpu_name() -> str:
    """The CPU's model name (:func:`jmeta.train.machine.cpu_name`)."""
    from jmeta.train.machine import cpu_name

    return cpu_name()


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name (``nvidia-smi``), or ``None``."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
    return lines[0].strip() if lines else None


def slug(text: str) -> str:
    """``text`` as a file-name part: ``"AMD EPYC 7B13"`` -> ``"amd-epyc-7b13"``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Python's and each installed package's version."""
    out = {"python": platform.python_version()}
    for package in packages:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str:
    """The commit measured, ``+dirty`` when tracked files have uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "-uno")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def cores_used() -> int:
    """CPUs this process may run on (fewer than the machine's when pinned)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine(device: str = "cpu") -> str:
    """The machine's name: the GPU's where ``device`` is not ``"cpu"`` and one is found,
    else the CPU's."""
    return (device != "cpu" and gpu_name()) or cpu_name()


def headline(device: str = "cpu") -> str:
    """The machine in a few words, for a title: ``"AMD EPYC, 2 CPUs"`` or
    ``"NVIDIA H100 80GB HBM3 (GPU), host AMD EPYC with 16 CPUs"``."""
    gpu = gpu_name() if device != "cpu" else None
    if gpu:
        return f"{gpu} (GPU), host {cpu_name()} with {os.cpu_count()} CPUs"
    return f"{cpu_name()}, {os.cpu_count()} CPUs"


def describe(packages: tuple[str, ...] = ("jaxlib", "flax", "optax", "torch")) -> str:
    """One line: :func:`jmeta.train.machine.describe_machine` (CPU, accelerators,
    OS, Python and JAX versions, load average), the CPUs this process may use
    where fewer, the versions of ``packages`` and the date."""
    from jmeta.train.machine import describe_machine

    parts = [describe_machine()]
    if cores_used() != os.cpu_count():
        parts.append(f"pinned to {cores_used()} of the CPUs")
    found = {k: v for k, v in versions(packages).items() if k != "python"}
    parts += [", ".join(f"{k} {v}" for k, v in found.items()), datetime.date.today().isoformat()]
    return "; ".join(p for p in parts if p)


def result_stem(what: str, device: str = "cpu", date: str | None = None) -> str:
    """``<what>_<machine>_<date>``, the name (without suffix) of a result file."""
    return f"{what}_{slug(machine(device))}_{date or datetime.date.today().isoformat()}"


if __name__ == "__main__":  # pragma: no cover
    print(describe())
