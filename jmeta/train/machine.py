"""A one-line description of the machine a number was measured on."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (Linux), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """CPU, logical CPU count, accelerators, OS, Python and JAX versions, load average."""
    import jax

    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    parts = [
        f"{cpu_name()}, {os.cpu_count()} logical CPUs",
        (
            f"JAX {jax.__version__} on {len(devices)} {jax.default_backend()} device(s) "
            f"({', '.join(kinds)})"
        ),
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
    ]
    if hasattr(os, "getloadavg"):
        parts.append(f"1-minute load average {os.getloadavg()[0]:.1f} when written")
    return "; ".join(parts)
