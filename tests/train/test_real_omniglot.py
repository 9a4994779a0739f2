"""A very short run of the real CLI on the real minimal Omniglot (skipped when absent)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ZIPS = ("images_background_small1.zip", "images_background_small2.zip")

pytestmark = pytest.mark.slow


def real_omniglot_dir() -> Path:
    env = os.environ.get("JMETA_OMNIGLOT_DIR_FOR_TESTS") or os.environ.get("JMETA_OMNIGLOT_DIR")
    return Path(env) if env else (REPO / ".." / "shared" / "data" / "omniglot").resolve()


def test_cli_trains_conv4_maml_on_real_minimal_omniglot(tmp_path):
    data = real_omniglot_dir()
    if not all((data / z).is_file() for z in ZIPS):
        pytest.skip(f"real Omniglot zips {ZIPS} not in {data}")
    # A subprocess with the default XLA flags and one device, as a user runs it (the suite's
    # --xla_backend_optimization_level=0 gives NaN gradients for conv4 with batch norm).
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=str(REPO), JMETA_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "jmeta.cli", "train", "--dataset", "omniglot",
        "--data-dir", str(data), "--num-steps", "4", "--steps-per-call", "2",
        "--eval-interval", "2", "--checkpoint-interval", "2", "--meta-batch-size", "4",
        "--val-tasks", "10", "--eval-tasks", "20", "--output-dir", str(out), "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "minimal-test, 5-way 1-shot" in done.stdout
    config = json.loads((out / "config.json").read_text())
    assert (config["train_split"], config["rotations"], config["width"]) == (
        "minimal-train",
        True,
        64,
    )
    scores = json.loads((out / "results.json").read_text())["test"]["3"]
    assert scores["accuracy"]["num"] == 20
    assert 0.1 < scores["accuracy_before"]["mean"] < 0.35  # chance is 0.2 before adaptation
    assert scores["accuracy"]["mean"] > scores["accuracy_before"]["mean"]
