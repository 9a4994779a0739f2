import dataclasses
import json

import pytest
from tiny_runs import TINY_SINUSOID, fake_omniglot

from jmeta.cli import main
from jmeta.train import TrainConfig


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JMETA_CACHE", str(tmp_path / "cache"))


def run(argv, capsys):
    """``(exit status, stdout, stderr)`` of ``jmeta argv``."""
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def test_help_lists_commands_and_every_config_field(capsys):
    status, out, _ = run(["--help"], capsys)
    assert status == 0 and "train" in out and "eval" in out
    status, out, _ = run(["train", "--help"], capsys)
    assert status == 0
    for field in dataclasses.fields(TrainConfig):
        flag = "--algo" if field.name == "algorithm" else "--" + field.name.replace("_", "-")
        assert flag in out, flag
    for flag in ("--config", "--resume", "--overwrite", "--no-progress"):
        assert flag in out
    assert "0.01 for sinusoid" in out and "0.4 for omniglot" in out  # per-data-set defaults
    status, out, _ = run(["eval", "--help"], capsys)
    assert status == 0 and "--checkpoint" in out
    assert run([], capsys)[0] == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ways", "3"], "--ways does not apply to sinusoid regression"),
        (["--ways", "three"], "argument --ways: invalid int value: 'three'"),
        (["--algo", "reptile9"], "argument --algo/--algorithm: invalid choice: 'reptile9'"),
        (["--meta-lr", "0"], "--meta-lr must be a finite number > 0; got 0.0"),
        (["--resume"], "--resume needs --output-dir"),
        (["--config", "missing.toml"], "--config: no such file: missing.toml"),
        (["--dataset", "imagenet"], "--dataset: unknown data set 'imagenet'"),
    ],
)
def test_bad_flags_get_one_clear_line(argv, message, capsys):
    status, _, err = run(["train", *argv], capsys)
    assert status == 2
    assert f"jmeta train: error: {message}" in err


def test_too_many_ways_names_the_split_and_its_classes(tmp_path, capsys):
    data = fake_omniglot(tmp_path / "omniglot")
    argv = ["train", "--dataset", "omniglot", "--data-dir", str(data), "--image-size", "16",
            "--ways", "6", "--queries", "2", "--output-dir", str(tmp_path / "run")]  # fmt: skip
    status, _, err = run(argv, capsys)
    assert status == 2
    assert (
        "ways=6 needs 6 distinct classes, but the val split 'minimal-val' of omniglot has 4" in err
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.standard_promotion  # optax.adam
def test_train_from_a_config_file_with_overrides_then_eval(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    lines = [
        f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}"
        for k, v in TINY_SINUSOID.items()
    ]
    config.write_text("\n".join(lines + ["seed = 3"]))
    out = tmp_path / "run"
    argv = ["train", "--config", str(config), "--num-steps", "10", "--test-inner-steps", "1",
            "--output-dir", str(out), "--no-progress"]  # fmt: skip
    status, stdout, _ = run(argv, capsys)
    assert status == 0, stdout
    saved = json.loads((out / "config.json").read_text())
    assert (saved["num_steps"], saved["seed"], saved["width"]) == (10, 3, 8)
    assert "MSE before adaptation" in stdout and "16 fixed tasks" in stdout

    status, _, err = run(argv, capsys)  # the same again: refused
    assert status == 2 and "already holds a run" in err and "--resume" in err

    status, stdout, _ = run(
        ["eval", "--checkpoint", str(out / "checkpoints/10"), "--tasks", "16",
         "--json", str(tmp_path / "s.json")],
        capsys,
    )  # fmt: skip
    assert status == 0 and "checkpoint at step 10, test split: 16 fixed tasks (seed 0)" in stdout
    scores = json.loads((tmp_path / "s.json").read_text())["scores"]
    results = json.loads((out / "results.json").read_text())["test"]
    assert scores == results  # the same tasks as the run's own test


def test_divergence_exits_1_with_the_step(tmp_path, capsys):
    argv = ["train", "--meta-optimizer", "sgd", "--meta-lr", "1e4", "--inner-lr", "1e4",
            "--num-steps", "100", "--steps-per-call", "2", "--eval-interval", "0",
            "--checkpoint-interval", "0", "--width", "8", "--meta-batch-size", "4",
            "--output-dir", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    status, _, err = run(argv, capsys)
    assert status == 1
    assert "jmeta train: stopped: meta-step" in err and "non-finite" in err
    # It diverged in its first compiled call: the run it made stays, to be resumed as advised.
    record = json.loads((tmp_path / "run" / "jmeta-run.json").read_text())
    assert record["diverged"]["meta_lr"] == 1e4 and (tmp_path / "run" / "metrics.jsonl").exists()


def test_eval_of_a_folder_without_a_run(tmp_path, capsys):
    status, _, err = run(["eval", "--checkpoint", str(tmp_path)], capsys)
    assert (
        status == 2 and f"jmeta eval: error: {tmp_path} holds no run: config.json not found" in err
    )
