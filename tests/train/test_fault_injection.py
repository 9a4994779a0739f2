"""Fault injection: SIGKILL at seeded random moments, damaged checkpoints, two writers.

A tiny sinusoid run is trained once without faults (the reference), and once
as a victim killed with SIGKILL 20 times, each time resumed with ``--resume``:
from inside, at a seeded random moment of a chosen phase of the run (compiled
steps, checkpoint writes, validation, the final test, metric lines, run-record
updates; a timer thread sends the signal, so it lands wherever the work has
got to), and every fifth time from outside, at a random moment of the life.
Twice its newest checkpoint is damaged (a flipped bit, a deleted file) before
the resume. The victim must end exactly as the reference: the same
checkpoints, the same ``metrics.jsonl`` without its timing fields, and a
``results.json`` equal byte for byte.

The runs are forked from one server process (tests/fault_zygote.py) that has
imported jmeta once; the programs are compiled once, by the reference, and
read by every later run from JAX's persistent compilation cache.
``JMETA_FAULT_SEED`` picks another sequence of faults.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
from tiny_runs import TINY_SINUSOID

from jmeta.cli import main
from jmeta.train import Checkpoints, read_metrics
from jmeta.train.logs import TIMING_KEYS

pytestmark = pytest.mark.standard_promotion  # the in-process eval restores an adam state

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("JMETA_FAULT_SEED", "20240613"))
KILLS = 20
NUM_STEPS, PER_CALL, INTERVAL = 40, 5, 10
# Validation and test on as many tasks with as many steps: they share one compiled program.
CONFIG = {**TINY_SINUSOID, "num_steps": NUM_STEPS, "steps_per_call": PER_CALL,
          "checkpoint_interval": INTERVAL, "eval_interval": INTERVAL, "keep_checkpoints": 2,
          "test_inner_steps": [1], "val_tasks": 8, "eval_tasks": 8,
          "keep_best": True}  # fmt: skip
PHASES = ("step", "checkpoint", "validation", "test", "log", "record")


class Zygote:
    """The fork server: ``run(argv)`` is ``jmeta argv`` in a fresh child process."""

    def __init__(self, cache: Path):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        }
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "tests/fault_zygote.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.runs = 0

    def _ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def start(self, argv: list[str], log: Path, plan: dict | None = None) -> int:
        self.runs += 1
        return self._ask({"op": "run", "argv": argv, "log": str(log), "plan": plan})["pid"]

    def wait(self, pid: int) -> int:
        return self._ask({"op": "wait", "pid": pid})["status"]

    def run(self, argv: list[str], log: Path, plan: dict | None = None) -> tuple[int, str]:
        """``(exit status, stderr)``; ``-9`` for a child killed by SIGKILL."""
        status = self.wait(self.start(argv, log, plan))
        return status, Path(f"{log}.err").read_text()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.process.stdout.close()


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    server = Zygote(tmp_path_factory.mktemp("jax-cache"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def reference(zygote, tmp_path_factory):
    """The uninterrupted run, and how long each phase of it took (seconds, per occurrence)."""
    root = tmp_path_factory.mktemp("faults")
    (root / "tiny.json").write_text(json.dumps(CONFIG))
    out, timings = root / "reference", root / "phases.json"
    plan = {"action": "measure", "signal": str(timings)}
    status, err = zygote.run(train_argv(root, out), root / "reference", plan)
    assert status == 0, err
    return out, json.loads(timings.read_text())


def train_argv(root: Path, out: Path, *flags: str) -> list[str]:
    return ["train", "--config", str(root / "tiny.json"), "--output-dir", str(out),
            "--no-progress", *flags]  # fmt: skip


def remaining(step: int, checkpointed: bool) -> dict[str, int]:
    """How many times each phase runs in a life that continues from ``step``."""
    chunks, intervals = (NUM_STEPS - step) // PER_CALL, (NUM_STEPS - step) // INTERVAL
    return {"step": chunks, "checkpoint": intervals, "validation": intervals, "test": 1,
            "log": chunks + intervals + 1, "record": 1 + (not checkpointed)}  # fmt: skip


def newest(out: Path) -> int:
    step, _ = Checkpoints(out / "checkpoints").newest_intact()
    return step or 0


def damage(out: Path, rng: random.Random, how: str) -> tuple[int, str]:
    """Flip one bit of, or delete, a seeded file of the newest checkpoint; ``(step, what)``."""
    step = Checkpoints(out / "checkpoints").latest()
    folder = out / "checkpoints" / str(step)
    files = sorted(p for p in (folder / "state").rglob("*") if p.is_file())
    path = rng.choice(files)
    if how == "flip":
        data = bytearray(path.read_bytes())
        bit = rng.randrange(8 * len(data))
        data[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(data))
        return step, "1 file(s) differ from their checksums: " + path.relative_to(folder).as_posix()
    path.unlink()
    return step, "1 file(s) missing: " + path.relative_to(folder).as_posix()


def restored(out: Path, step: int, folder: str = "checkpoints"):
    """The arrays of checkpoint ``step`` as saved (no template needed: restored to NumPy)."""
    import orbax.checkpoint as ocp

    with warnings.catch_warnings():  # orbax: restoring without a template reads its shardings
        warnings.filterwarnings("ignore", "Sharding info not provided", UserWarning)
        return ocp.PyTreeCheckpointer().restore(out / folder / str(step) / "state")


def assert_same_run(reference: Path, victim: Path) -> None:
    assert (victim / "results.json").read_bytes() == (reference / "results.json").read_bytes()
    records = [
        [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_metrics(path)]
        for path in (reference / "metrics.jsonl", victim / "metrics.jsonl")
    ]
    assert records[0] == records[1]
    train = [r["step"] for r in records[0] if r["split"] == "train"]
    assert train == list(range(PER_CALL, NUM_STEPS + 1, PER_CALL))
    steps = Checkpoints(reference / "checkpoints").steps()
    assert Checkpoints(victim / "checkpoints").steps() == steps
    for step in steps:
        assert Checkpoints(victim / "checkpoints").verify(step) is None
        jax.tree.map(
            np.testing.assert_array_equal, restored(reference, step), restored(victim, step)
        )
    best = Checkpoints(reference / "best").steps()  # kept with keep_best, killed like the others
    assert len(best) == 1 and Checkpoints(victim / "best").steps() == best
    assert Checkpoints(victim / "best").verify(best[0]) is None
    jax.tree.map(
        np.testing.assert_array_equal,
        restored(reference, best[0], "best"),
        restored(victim, best[0], "best"),
    )
    configs = [json.loads((d / "config.json").read_text()) for d in (reference, victim)]
    assert {**configs[0], "output_dir": None} == {**configs[1], "output_dir": None}


def test_twenty_kills_and_two_damaged_checkpoints_end_as_an_uninterrupted_run(
    zygote, reference, tmp_path
):
    reference, phases = reference
    root = reference.parent
    victim = tmp_path / "victim"
    rng = random.Random(SEED)
    kills: list[tuple[str, int, float | None]] = []
    damaged: dict[int, str] = {7: "flip", 14: "delete"}
    expect_warning = None
    flags: tuple[str, ...] = ()
    lives: list[float] = []  # wall time of each life
    while len(kills) < KILLS:
        step = newest(victim) if victim.exists() else 0
        record = victim / "jmeta-run.json"
        checkpointed = record.exists() and json.loads(record.read_text())["checkpointed"]
        left = remaining(step, checkpointed)
        # Each phase in turn (those that this life still runs), at a random occurrence and
        # moment: a delay drawn over the phase's measured duration, or right after it.
        phase = next(p for p in PHASES[len(kills) % len(PHASES) :] + PHASES if left[p])
        occurrence = rng.randint(1, min(left[phase], 2))
        # (The reference's test compiled its program; the warm validations share it.)
        typical = float(np.median(phases["validation" if phase == "test" else phase]))
        delay = None if rng.random() < 0.2 else rng.uniform(0.0, 1.2 * typical)
        if phase == "test" and delay is not None:
            delay = min(delay, 0.9 * typical)  # must land before the run ends
        plan = {"action": "kill", "phase": phase, "occurrence": occurrence, "delay": delay}
        log = tmp_path / f"life{zygote.runs}"
        tick = time.perf_counter()
        if len(kills) % 5 == 4:  # from outside, at a random moment of a typical life
            plan = None
            pid = zygote.start(train_argv(root, victim, *flags), log)
            time.sleep(rng.uniform(0.0, float(np.median(lives))))
            os.kill(pid, signal.SIGKILL)
            status, err = zygote.wait(pid), Path(f"{log}.err").read_text()
            phase, occurrence, delay = "outside", 0, None
        else:
            status, err = zygote.run(train_argv(root, victim, *flags), log, plan)
        lives.append(time.perf_counter() - tick)
        assert "Traceback" not in err, err
        if expect_warning is not None:
            assert expect_warning in err, err
            expect_warning = None
        if status == 0:  # finished before the kill landed: start the run again, replacing it
            flags = ("--overwrite",)
            continue
        if status == 2:  # killed between a new run's marker and its config.json: nothing to resume
            assert err.splitlines()[-1] == (
                f"jmeta train: error: {victim} holds no run: config.json not found (the run was "
                "stopped before it had started; start it again with --overwrite)."
            )
            flags = ("--overwrite",)
            continue
        assert status == -signal.SIGKILL, err
        kills.append((phase, occurrence, delay))
        flags = ("--resume",)
        how = damaged.get(len(kills))
        if how and len(Checkpoints(victim / "checkpoints").steps()) >= 2:
            bad, problem = damage(victim, rng, how)
            older = Checkpoints(victim / "checkpoints").steps()[-2]
            expect_warning = (
                f"jmeta train: warning: checkpoint {bad} in {victim / 'checkpoints'} is damaged "
                f"({problem}); using checkpoint {older}, the newest intact one."
            )
        elif how:
            damaged[len(kills) + 1] = how  # only one checkpoint yet: damage a later one
    status, err = zygote.run(train_argv(root, victim, *flags), tmp_path / "last")
    assert status == 0, err
    if expect_warning is not None:
        assert expect_warning in err, err
    assert {phase for phase, _, _ in kills} == {*PHASES, "outside"}, kills
    assert sum(1 for k in kills if k[0] == "checkpoint" and k[2] is not None) >= 2
    assert_same_run(reference, victim)


def test_a_live_run_refuses_a_second_writer_and_can_be_scored(zygote, reference, tmp_path, capsys):
    reference, _ = reference
    root, live = reference.parent, tmp_path / "live"
    signal_file = tmp_path / "paused"
    plan = {"action": "pause", "phase": "step", "occurrence": 3, "signal": str(signal_file)}
    pid = zygote.start(train_argv(root, live), tmp_path / "live", plan)
    deadline = time.monotonic() + 120
    while not signal_file.exists():
        assert time.monotonic() < deadline, Path(f"{tmp_path / 'live'}.err").read_text()
        time.sleep(0.05)
    # Paused inside its third compiled call, after checkpoint 10, holding the folder's lock.
    host = socket.gethostname()
    holder = f"is being written by another jmeta process (PID {pid} on host {host}, since "
    for flags in (["--resume"], ["--overwrite"], []):
        with pytest.raises(SystemExit) as exit_:
            main(train_argv(root, live, *flags))
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert f"jmeta train: error: {live} {holder}" in err, err
    # A reader is let in: it reads config.json and the complete checkpoint 10 (the best one
    # too: the only validation so far).
    assert main(["eval", "--checkpoint", str(live / "checkpoints")]) == 0
    assert "maml checkpoint at step 10, test split: 8 fixed tasks" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(live)]) == 0
    out = capsys.readouterr().out
    assert "maml best checkpoint (by validation score) at step 10, test split: 8 fixed" in out
    os.kill(pid, signal.SIGKILL)
    assert zygote.wait(pid) == -signal.SIGKILL
    # The lock died with its process: the run is resumed and ends as the reference.
    status, err = zygote.run(train_argv(root, live, "--resume"), tmp_path / "resumed")
    assert status == 0, err
    assert_same_run(reference, live)


def test_a_replacement_killed_before_it_started_keeps_the_old_run_aside(
    zygote, reference, tmp_path
):
    reference, _ = reference
    root, out = reference.parent, tmp_path / "run"
    shutil.copytree(reference, out)
    old = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".jmeta-lock"}
    plan = {"action": "kill", "phase": "step", "occurrence": 1, "delay": 0.0}
    status, err = zygote.run(train_argv(root, out, "--overwrite"), tmp_path / "killed", plan)
    assert status == -signal.SIGKILL, err
    aside = out / ".jmeta-replaced"
    assert {n: (aside / n).read_bytes() for n in old} == old  # the old run, whole
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == ["30", "40"]
    status, err = zygote.run(train_argv(root, out, "--resume"), tmp_path / "resumed")
    assert status == 0, err
    assert not aside.exists()  # deleted once the new run had started
    assert_same_run(reference, out)
