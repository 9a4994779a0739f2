"""The real CLI on the real minimal Omniglot (skipped when the zips are absent).

One short run of ``jmeta train`` (conv4 MAML, the defaults) serves both tests: the CLI's
own checks, and ``jmeta predict`` against ``jmeta eval`` on images written from the
release's files (issue 18's acceptance test). Both run in subprocesses with XLA's default
flags and one device, as a user runs them (the suite's --xla_backend_optimization_level=0
gives NaN gradients for conv4 with batch norm), sharing one persistent compilation cache
so that ``jmeta eval`` reuses the test program the run compiled.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from predict_helpers import ZIPS, real_omniglot_dir

from jmeta.train import saved_config

REPO = Path(__file__).resolve().parents[2]
EVAL_TASKS = 12

pytestmark = pytest.mark.slow


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]),
               JMETA_CACHE=str(root / "cache"),
               JMETA_COMPILATION_CACHE=str(root / "xla"))  # fmt: skip
    return env


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A 4-step conv4 MAML run of the CLI on the real zips: (its folder's parent, the process)."""
    data = real_omniglot_dir()
    if not all((data / z).is_file() for z in ZIPS):
        pytest.skip(f"real Omniglot zips {ZIPS} not in {data}")
    root = tmp_path_factory.mktemp("real-omniglot")
    command = [
        sys.executable, "-m", "jmeta.cli", "train", "--dataset", "omniglot",
        "--data-dir", str(data), "--num-steps", "4", "--steps-per-call", "2",
        "--eval-interval", "2", "--checkpoint-interval", "2", "--meta-batch-size", "4",
        "--val-tasks", "10", "--eval-tasks", str(EVAL_TASKS), "--output-dir", str(root / "run"),
        "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, env=_env(root), capture_output=True, text=True, timeout=600)
    return root, done


def test_cli_trains_conv4_maml_on_real_minimal_omniglot(real_run):
    root, done = real_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert "minimal-test, 5-way 1-shot" in done.stdout
    config = json.loads((root / "run" / "config.json").read_text())
    assert (config["train_split"], config["rotations"], config["width"]) == (
        "minimal-train",
        True,
        64,
    )
    scores = json.loads((root / "run" / "results.json").read_text())["test"]["3"]
    assert scores["accuracy"]["num"] == EVAL_TASKS
    assert 0.1 < scores["accuracy_before"]["mean"] < 0.35  # chance is 0.2 before adaptation
    assert scores["accuracy"]["mean"] > scores["accuracy_before"]["mean"]


def test_predict_equals_eval_on_real_omniglot(real_run):
    root, trained = real_run
    assert trained.returncode == 0, trained.stdout + trained.stderr
    command = [sys.executable, str(REPO / "tests" / "predict_helpers.py"), str(root / "run"),
               str(root / "tasks"), str(EVAL_TASKS)]  # fmt: skip
    done = subprocess.run(command, env=_env(root), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    scores = json.loads(done.stdout.splitlines()[-1])
    assert scores["predict"] == pytest.approx(scores["eval"], abs=1e-6)
    # The images were the release's own 105x105 black-on-white PNGs of held-out alphabets.
    assert saved_config(root / "run").test_split == "minimal-test"
    support = next((root / "tasks" / "task0" / "support").iterdir())
    with Image.open(next(support.iterdir())) as image:
        assert image.size == (105, 105)
