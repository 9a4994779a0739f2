"""A run killed with SIGKILL at an arbitrary moment and resumed ends exactly like an uninterrupted one."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from tiny_runs import TINY_SINUSOID

import jmeta
from jmeta.train import Checkpoints, read_metrics, saved_config
from jmeta.train.build import build_learners, initial_state, meta_optimizer
from jmeta.train.logs import TIMING_KEYS
from jmeta.train.problem import build_problem

REPO = Path(__file__).resolve().parents[2]
# Many checkpoints, so that the kill lands anywhere: mid-step, mid-save, mid-log.
CONFIG = {**TINY_SINUSOID, "num_steps": 300, "checkpoint_interval": 5, "eval_interval": 50,
          "test_inner_steps": [1]}  # fmt: skip


def start(config_file: Path, output_dir: Path, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "jmeta.cli", "train", "--config", str(config_file),
         "--output-dir", str(output_dir), "--no-progress", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


def final_state(output_dir: Path):
    config = saved_config(output_dir)
    problem = build_problem(config)
    learner, _ = build_learners(config, problem)
    step = jmeta.meta_train_step(learner, meta_optimizer(config))
    like, _ = initial_state(step, learner, problem.model, config.seed, abstract=True)
    with Checkpoints(output_dir / "checkpoints") as ckpts:
        return ckpts.restore(like=like)


def numbered(folder: Path) -> list[int]:
    return (
        sorted(int(p.name) for p in folder.glob("*") if p.name.isdigit()) if folder.exists() else []
    )


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(CONFIG))
    reference = start(config_file, tmp_path / "reference")
    victim = start(config_file, tmp_path / "victim")
    deadline = time.monotonic() + 240
    while len(numbered(tmp_path / "victim/checkpoints")) < 3 and victim.poll() is None:
        assert time.monotonic() < deadline, "the run never wrote 3 checkpoints"
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.0))
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = numbered(tmp_path / "victim/checkpoints")
    assert killed_at and killed_at[-1] < 300
    finish(start(config_file, tmp_path / "victim", "--resume"))
    finish(reference)

    jax.tree.map(
        np.testing.assert_array_equal,
        final_state(tmp_path / "reference"),
        final_state(tmp_path / "victim"),
    )
    results = [
        json.loads((tmp_path / d / "results.json").read_text()) for d in ("reference", "victim")
    ]
    assert results[0]["test"] == results[1]["test"]
    records = [
        [
            {k: v for k, v in r.items() if k not in TIMING_KEYS}
            for r in read_metrics(tmp_path / d / "metrics.jsonl")
        ]
        for d in ("reference", "victim")
    ]
    assert records[0] == records[1]
    assert [r["step"] for r in records[0] if r["split"] == "train"] == list(range(5, 301, 5))
