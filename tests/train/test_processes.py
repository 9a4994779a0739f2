"""`jmeta train` in two processes (jax.distributed on 127.0.0.1): equal to one process, and
one of them killed mid-run stops the other with one line, then both resume as if never stopped."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from tiny_runs import run_cli as run

from jmeta.train import Checkpoints, read_metrics
from jmeta.train.logs import TIMING_KEYS

TESTS = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 240
TINY = [
    "--num-steps", "10", "--steps-per-call", "5", "--eval-interval", "5",
    "--checkpoint-interval", "5", "--meta-batch-size", "8", "--width", "8",
    "--val-tasks", "8", "--eval-tasks", "16", "--test-inner-steps", "1", "--no-progress",
]  # fmt: skip


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jmeta_train(argvs, devices_per_process: int, logs: pathlib.Path, kill=None):
    """Run ``jmeta train`` once per argv, all at once; ``[(returncode, output)]``.

    An argv may start with ``pause=SIGNAL`` (tests/pausing_train.py: the process pauses before
    its second compiled call); then ``kill(processes)`` runs once the processes have started.
    """
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
        if argv and argv[0].startswith("pause="):
            program = [str(TESTS / "pausing_train.py"), argv[0][len("pause=") :], "2", *argv[1:]]
        else:
            program = ["-m", "jmeta.cli", "train", *argv]
        with open(files[-1], "w") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, *program],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        if kill is not None:
            kill(procs)
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


def two_process_argvs(out: pathlib.Path, *flags: str) -> list[list[str]]:
    joined = ["--coordinator-address", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    return [[*TINY, "--output-dir", str(out), *joined, "--process-id", str(i), *flags]
            for i in (0, 1)]  # fmt: skip


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """An uninterrupted run of two processes of two devices each, keeping the best state."""
    root = tmp_path_factory.mktemp("two")
    for code, output in jmeta_train(two_process_argvs(root / "run", "--keep-best"), 2, root):
        assert code == 0, output[-3000:]
        assert "Traceback" not in output
    return root / "run"


def restored(run: pathlib.Path, step: int, folder: str = "checkpoints"):
    """The arrays of checkpoint ``step`` as saved (restored to NumPy)."""
    with warnings.catch_warnings():  # orbax: restoring without a template reads its shardings
        warnings.filterwarnings("ignore", "Sharding info not provided", UserWarning)
        return ocp.PyTreeCheckpointer().restore(run / folder / str(step) / "state")


def test_two_processes_write_the_results_of_one(two, tmp_path):
    one = tmp_path / "one"
    ((code, output),) = jmeta_train([[*TINY, "--output-dir", str(one), "--keep-best"]], 4, tmp_path)
    assert code == 0, output[-3000:]
    results = [json.loads((run / "results.json").read_text()) for run in (two, one)]
    assert results[0]["step"] == results[1]["step"] == 10
    for name, score in results[1]["test"]["1"].items():
        # The same 4 devices in the same order; the all-reduce crosses processes (gloo) in one
        # run and not in the other, so the sums may round differently (test_devices.py).
        np.testing.assert_allclose(results[0]["test"]["1"][name]["mean"], score["mean"], rtol=1e-4)
    # --keep-best: one best state, written by process 0 alone, at the step one process picks.
    assert results[0]["best"]["step"] == results[1]["best"]["step"] == results[0]["tested_step"]
    np.testing.assert_allclose(results[0]["best"]["value"], results[1]["best"]["value"], rtol=1e-4)
    best = results[1]["best"]["step"]
    assert Checkpoints(two / "best").steps() == [best]
    assert Checkpoints(two / "best").verify(best) is None
    jax.tree.map(
        # Adam's update divides by the gradient's size, so a few last-bit differences of a
        # near-zero gradient can move a parameter by up to the step size (1e-3) times the
        # steps; measured: at most ~1e-6 (CPU, 10 steps).
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        restored(two, best, "best"), restored(one, best, "best"),
    )  # fmt: skip
    # Process 0 alone wrote the folder: one run record, one set of metrics.
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    lines = (two / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["split"] for line in lines] == ["train", "val", "train", "val", "test"]


def test_a_killed_process_stops_the_other_with_one_line_and_both_resume(two, tmp_path):
    reference = two
    run = tmp_path / "run"
    paused = tmp_path / "paused"
    argvs = two_process_argvs(run, "--keep-best")
    argvs[1] = [f"pause={paused}", *argvs[1]]
    stopped = []

    def kill_process_1(procs):
        # Process 1 pauses before steps 6-10; process 0 checkpoints step 5 and waits for it.
        checkpoints = Checkpoints(run / "checkpoints")
        deadline = time.monotonic() + TIMEOUT_S
        while not (paused.exists() and checkpoints.steps() == [5]):
            assert time.monotonic() < deadline and procs[0].poll() is None
            time.sleep(0.1)
        time.sleep(0.5)  # process 0 is past the checkpoint, in the collective of step 6
        procs[1].kill()
        stopped.append(time.monotonic())
        procs[0].wait(timeout=60)
        stopped.append(time.monotonic())

    (code0, output0), (code1, _) = jmeta_train(argvs, 2, tmp_path, kill_process_1)
    assert code1 == -9
    # The survivor stops on its own within seconds (processes.GRACE_S = 5), with one line.
    assert code0 == 1 and stopped[1] - stopped[0] < 30, output0[-3000:]
    assert output0.strip().splitlines()[-1] == (
        "jmeta train: stopped: process 1 of 2 ended before the run did (killed, or stopped by an "
        "error in its own output); this process (0) stops too. Checkpoints written so far are "
        "intact: start every process again with --resume to continue."
    )
    assert "Traceback" not in output0
    # The folder is intact: the checkpoint and best state of step 5, the lines up to step 5.
    assert Checkpoints(run / "checkpoints").verify(5) is None
    assert [(r["split"], r["step"]) for r in read_metrics(run / "metrics.jsonl")] == [
        ("train", 5), ("val", 5)
    ]  # fmt: skip
    assert not (run / "results.json").exists()

    resumed = two_process_argvs(run, "--keep-best", "--resume")
    for code, output in jmeta_train(resumed, 2, tmp_path):
        assert code == 0, output[-3000:]
    # Bit for bit as the uninterrupted run: the same devices, processes and collectives.
    assert (run / "results.json").read_bytes() == (reference / "results.json").read_bytes()
    records = [
        [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_metrics(path)]
        for path in (reference / "metrics.jsonl", run / "metrics.jsonl")
    ]
    assert records[0] == records[1]
    for folder in ("checkpoints", "best"):
        steps = Checkpoints(reference / folder).steps()
        assert Checkpoints(run / folder).steps() == steps
        for step in steps:
            saved = [restored(r, step, folder) for r in (reference, run)]
            jax.tree.map(np.testing.assert_array_equal, *saved)


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
