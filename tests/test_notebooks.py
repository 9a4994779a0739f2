"""Every notebook in colab/ runs top to bottom, on CPU, with its small settings.

Each notebook runs in a fresh Jupyter kernel (a subprocess) with ``JMETA_SMALL=1``,
``PYTHONPATH`` at the repository root (so ``import jmeta`` and ``import benchmarks``
find this checkout) and the working directory a temporary folder. The kernel gets its
own ``XLA_FLAGS`` instead of the 8 simulated devices that tests/conftest.py sets for this
process: one device, or a few where a notebook's multi-device path is exercised.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "colab"

# notebook -> simulated CPU devices in its kernel (1: a plain CPU, as on a Colab CPU runtime).
DEVICES = {
    "01_quickstart.ipynb": 4,  # jmeta.train.train splits each meta-batch over the 4 devices
    "02_omniglot.ipynb": 1,
    "03_custom_model_and_algorithm.ipynb": 1,
    "04_throughput.ipynb": 2,  # the sharded jmeta step next to the single-device peers
}
# LLVM optimisation off compiles the small MLP programs about a third faster (as in
# conftest.py). Not for Conv4 with batch norm (02): XLA:CPU then returns NaN meta-gradients
# (see tests/tiny_runs.py).
FAST_COMPILE = {"01_quickstart.ipynb", "03_custom_model_and_algorithm.ipynb", "04_throughput.ipynb"}
TIMEOUT_S = 240  # per cell; the suite shares 2 busy cores, so generous


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(DEVICES)


def kernel_env(tmp_path: Path, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    flags = [f"--xla_force_host_platform_device_count={DEVICES[name]}"] if DEVICES[name] > 1 else []
    if name in FAST_COMPILE:
        flags.append("--xla_backend_optimization_level=0")
    env["XLA_FLAGS"] = " ".join(flags)  # replaces this process's flags (conftest.py)
    env["JAX_PLATFORMS"] = "cpu"
    env["JMETA_SMALL"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["JMETA_CACHE"] = str(tmp_path / "cache")  # decoded data sets: not in the home folder
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
    return env


KERNEL = "jmeta-notebook-test"


def run_notebook(path: Path, tmp_path: Path, env: dict[str, str], monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    # A kernel of this interpreter, whatever kernelspecs the machine has installed.
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core: no deprecation warning

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name=KERNEL, timeout=TIMEOUT_S, resources={"metadata": {"path": str(tmp_path)}}
    )
    start = time.perf_counter()
    client.execute(env=env, cwd=str(tmp_path))  # starts, runs and shuts down the kernel
    return nb, time.perf_counter() - start


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_notebook_runs(name: str, tmp_path: Path, monkeypatch):
    env = kernel_env(tmp_path, name)
    if name == "02_omniglot.ipynb":  # a fake release in the real layout; nothing is downloaded
        from tiny_runs import fake_omniglot

        data = fake_omniglot(tmp_path / "omniglot", characters=5, drawers=8)  # 5-way val tasks
        env["JMETA_OMNIGLOT_DIR"] = str(data)
    cpu_before = _children_cpu_s()
    # execute() raises CellExecutionError, with the cell and its traceback, at the first error.
    nb, seconds = run_notebook(NOTEBOOKS / name, tmp_path, env, monkeypatch)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code)
    print(f"{name}: {seconds:.1f} s wall, {_children_cpu_s() - cpu_before:.1f} s CPU in the kernel")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel, once it has exited
    return usage.ru_utime + usage.ru_stime
