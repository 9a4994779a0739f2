"""`jmeta train` in two processes (jax.distributed on 127.0.0.1) equals one process."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from tiny_runs import run_cli as run

TESTS = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 240
TINY = [
    "--num-steps", "10", "--steps-per-call", "5", "--eval-interval", "5",
    "--checkpoint-interval", "10", "--meta-batch-size", "8", "--width", "8",
    "--val-tasks", "8", "--eval-tasks", "16", "--test-inner-steps", "1", "--no-progress",
]  # fmt: skip


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jmeta_train(argvs, devices_per_process: int, logs: pathlib.Path):
    """Run ``jmeta train`` once per argv, all at once; ``[(returncode, output)]``."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "JAX_COORD"))},
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process} "
        "--xla_backend_optimization_level=0",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(TESTS.parent),
    }
    procs, files = [], []
    for i, argv in enumerate(argvs):
        files.append(logs / f"process{i}-{time.monotonic_ns()}.log")
        with open(files[-1], "w") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "jmeta.cli", "train", *argv],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"jmeta train did not finish within {TIMEOUT_S} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [(p.returncode, f.read_text()) for p, f in zip(procs, files, strict=True)]


def test_two_processes_write_the_results_of_one(tmp_path):
    port = free_port()
    two = tmp_path / "two"
    joined = ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2"]
    argvs = [[*TINY, "--output-dir", str(two), *joined, "--process-id", str(i)] for i in (0, 1)]
    for code, output in jmeta_train(argvs, 2, tmp_path):
        assert code == 0, output[-3000:]
    ((code, output),) = jmeta_train([[*TINY, "--output-dir", str(tmp_path / "one")]], 4, tmp_path)
    assert code == 0, output[-3000:]
    results = [json.loads((tmp_path / r / "results.json").read_text()) for r in ("two", "one")]
    assert results[0]["step"] == results[1]["step"] == 10
    for name, score in results[1]["test"]["1"].items():
        # The same 4 devices in the same order; the all-reduce crosses processes (gloo) in one
        # run and not in the other, so the sums may round differently (test_devices.py).
        np.testing.assert_allclose(results[0]["test"]["1"][name]["mean"], score["mean"], rtol=1e-4)
    # Process 0 alone wrote the folder: one run record, one set of metrics.
    assert sorted(p.name for p in two.iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )
    lines = (two / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["split"] for line in lines] == ["train", "val", "train", "val", "test"]


@pytest.mark.parametrize(
    "process",
    [
        1,  # no coordinator listens at the address
        0,  # the coordinator, started alone: fewer processes than --num-processes
    ],
)
def test_processes_that_cannot_join_are_one_line_after_the_timeout(process, tmp_path):
    port = free_port()
    argv = [*TINY, "--output-dir", str(tmp_path / "run"), "--coordinator-address",
            f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(process),
            "--coordinator-timeout", "3"]  # fmt: skip
    started = time.monotonic()
    ((code, output),) = jmeta_train([argv], 1, tmp_path)
    assert time.monotonic() - started < 90  # the timeout, not a hang
    assert code == 2, output
    last = output.strip().splitlines()[-1]
    assert last.startswith(
        f"jmeta train: error: could not join the run's processes at --coordinator-address "
        f"127.0.0.1:{port} within --coordinator-timeout (3 s), as process {process} of "
        "--num-processes 2: process 0 must be running there and reachable, and every process "
        "started with the same --num-processes (timed out)."
    ), output
    assert "Traceback" not in output
    assert not (tmp_path / "run").exists()


def test_a_process_id_beyond_the_process_count_is_one_line(tmp_path, capsys):
    argv = ["train", "--output-dir", str(tmp_path / "run"), "--num-processes", "2",
            "--process-id", "2"]  # fmt: skip
    status, _, err = run(argv, capsys)
    assert status == 2
    assert err.strip().splitlines()[-1] == (
        "jmeta train: error: --process-id 2 must be below --num-processes (2): processes are "
        "numbered from 0."
    )
    assert not (tmp_path / "run").exists()
