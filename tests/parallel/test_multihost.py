"""Two processes on localhost (4 CPU devices each, gloo collectives) equal one process."""

import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest
from parallel_helpers import heterogeneous_tasks, init_params, learner, sample_heterogeneous

import jmeta

TESTS = pathlib.Path(__file__).resolve().parents[1]
NUM_PROCESSES = 2
TIMEOUT_S = 120


def has_cpu_collectives() -> bool:
    """Whether this jaxlib can run collectives across CPU processes (gloo over TCP)."""
    try:
        from jax._src.lib import _jax
    except ImportError:  # a layout we do not know: let the test say
        return True
    return hasattr(_jax, "make_gloo_tcp_collectives")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(out_dir: pathlib.Path) -> None:
    """Run the worker processes to completion, killing them past TIMEOUT_S in all."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]),
    }
    worker, port = str(TESTS / "multihost_worker.py"), str(free_port())
    logs = [out_dir / f"process{i}.log" for i in range(NUM_PROCESSES)]
    procs = []
    try:
        for i, log in enumerate(logs):
            with open(log, "w") as out:
                args = [sys.executable, worker, port, str(i), str(NUM_PROCESSES), str(out_dir)]
                procs.append(subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + TIMEOUT_S
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker processes did not finish within {TIMEOUT_S} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, f"worker failed:\n{log.read_text()[-4000:]}"


@pytest.mark.skipif(
    not has_cpu_collectives(), reason="this jaxlib has no gloo CPU collectives for multi-process"
)
@pytest.mark.standard_promotion  # optax.adam
def test_two_processes_equal_one_process(tmp_path):
    run_workers(tmp_path)

    tasks, key = heterogeneous_tasks(jax.random.key(1)), jax.random.key(2)
    grads, _ = jax.jit(lambda p, t, k: jmeta.meta_gradient(learner(), p, t, k))(
        init_params(), tasks, key
    )
    step = jmeta.meta_train_step(learner(), optax.adam(1e-2))
    state, metrics = jax.jit(step.update)(step.init(init_params()), tasks, key)
    scanned, _ = jmeta.scan_steps(step, sample_heterogeneous, 2)(step.init(init_params()), key)

    slices = []
    for i in range(NUM_PROCESSES):
        out = np.load(tmp_path / f"process{i}.npz")
        slices.append(tuple(out["slice"]))
        np.testing.assert_allclose(out["loss"], metrics["loss"], rtol=2e-4)
        for name, tree in [
            ("grad", grads),
            ("step", state.meta_params),
            ("scan", scanned.meta_params),
        ]:
            for j, expected in enumerate(jax.tree.leaves(tree)):
                np.testing.assert_allclose(out[f"{name}{j}"], expected, rtol=2e-4, atol=1e-5)
    assert slices == [(0, 8), (8, 16)]  # each process fed half of the meta-batch
