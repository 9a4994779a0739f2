import dataclasses
import json

import pytest
from tiny_runs import TINY_SINUSOID, fake_omniglot
from tiny_runs import run_cli as run

from jmeta.cli import build_parser
from jmeta.models import DEFAULT_CONV_IMPL_REASON
from jmeta.train import ALGORITHMS, TrainConfig, register_algorithm
from jmeta.train.config import FIELDS


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JMETA_CACHE", str(tmp_path / "cache"))


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
    assert "15 for omniglot; otherwise --queries" in out
    assert " ".join(DEFAULT_CONV_IMPL_REASON.split()) in " ".join(out.split())  # what auto does
    status, out, _ = run(["eval", "--help"], capsys)
    assert status == 0 and "--checkpoint" in out
    assert "95% confidence interval" in " ".join(out.split())
    for command in ("train", "eval", "predict"):  # no escaped percent sign left as it is
        assert "%%" not in run([command, "--help"], capsys)[1], command
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
        # The library's errors, with flags instead of field names.
        (["--augment"], "--augment does not apply to sinusoid regression"),
        (["--eval-rotations"], "--eval-rotations does not apply to sinusoid regression"),
        (["--shots", "0"], "--shots must be >= 1; got 0"),
        (["--inner-lr", "nan"], "--inner-lr must be a finite number > 0; got nan"),
        (["--test-inner-steps", "1", "2147483648"], "--test-inner-steps must be <= 2147483647"),
        (["--model", "conv4"], "--model conv4 takes images; sinusoid regression needs mlp"),
        (["--steps-per-call", "300"],
         r"--eval-interval (5000) must be a multiple of --steps-per-call (300)"),
        (["--eval-tasks", "1"], "--eval-tasks must be >= 2 for a confidence interval; got 1"),
        (["--algo", "protonet"], "--algo protonet classifies by comparing embeddings"),
        (["--dataset", "omniglot", "--algorithm", "cavia"], "--algo cavia feeds its context"),
        (["--dataset", "omniglot", "--model", "mlp"], "--model mlp takes vectors; omniglot needs"),
        (["--dataset", "omniglot", "--train-split", "none"], "--train-split cannot be 'none'"),
        # Issue 13.5: every value checked against what the code can represent, before anything.
        (["--seed", "4294967296"],
         "--seed must be <= 4294967295 (seeds are uint32); got 4294967296"),
        (["--eval-seed", "1" + "0" * 23], "--eval-seed must be <= 4294967294 (seeds are uint32"),
        (["--eval-seed", "1e23"], "argument --eval-seed: invalid int value: '1e23'"),
        (["--num-steps", "3000000000"],
         "--num-steps must be <= 2147483647 (the step counter is int32); got 3000000000"),
        (["--meta-lr", "1e39"], "--meta-lr must lie between 1.4e-45 and 3.4e+38 to be a float32"),
        # Issue 15: the devices (tests have 8 simulated CPU devices).
        (["--devices", "9"], "--devices 9 is more than the 8 cpu device(s) this process has."),
        (["--devices", "0"], "--devices must be >= 1; got 0"),
        (["--meta-batch-size", "12"],
         "--meta-batch-size (12) must split evenly over the 8 devices that run it (--devices 8, "
         "all of them, by default): use a multiple of 8 tasks (e.g. 16), or --devices 1 or 2 or "
         "3 or 4 or 6."),
        (["--meta-batch-size", "12", "--devices", "8"],
         "--meta-batch-size (12) must split evenly over the 8 devices that run it (--devices 8)"),
    ],
)  # fmt: skip
def test_bad_flags_get_one_clear_line(argv, message, capsys, tmp_path):
    out = [] if "--resume" in argv else ["--output-dir", str(tmp_path / "run")]
    status, _, err = run(["train", *argv, *out], capsys)
    assert status == 2
    assert f"jmeta train: error: {message}" in err
    assert err.strip().splitlines()[-1].startswith("jmeta train: error: ")  # one line, last
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_a_bad_value_leaves_an_existing_run_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoints" / "10").mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    argv = ["train", "--overwrite", "--seed", "4294967296", "--output-dir", str(out)]
    status, _, err = run(argv, capsys)
    assert status == 2 and "--seed must be <= 4294967295" in err
    assert (out / "checkpoints" / "10").is_dir() and (out / "config.json").exists()


def test_a_meta_batch_too_large_for_memory_is_refused_before_compiling(tmp_path, capsys):
    argv = ["train", "--meta-batch-size", "100000000", "--devices", "1",
            "--output-dir", str(tmp_path / "run")]  # fmt: skip
    status, _, err = run(argv, capsys)
    assert status == 2
    assert "jmeta train: error: --meta-batch-size 100000000 needs at least an estimated " in err
    assert "720.4 GB per meta-step (7.2 kB per task" in err  # as docs/training.md says
    assert "lower --meta-batch-size." in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        # Issue 13.9: one field twice, and a value of the wrong type.
        ("num-steps = 10\nnum_steps = 20", "--config: {path}: 'num-steps' and 'num_steps' both "
         "set the field num_steps; keep one."),
        ('algorithm = ["maml"]', "{path}: algorithm must be a string; got ['maml']."),
        ('algorithm = "nope"', "{path}: algorithm: unknown algorithm 'nope'"),
        ("num_steps = 3000000000", "{path}: num_steps must be <= 2147483647"),
        ("steps = 3", "--config: {path}: unknown config field(s) ['steps']"),
        ("num_steps = = 3", "--config: could not parse {path} as TOML"),
        # A file value and a flag in one message: each named where it was set.
        ("steps_per_call = 300",
         "{path}: --eval-interval (5000) must be a multiple of steps_per_call (300)"),
    ],
)  # fmt: skip
def test_config_file_errors_name_the_file_and_key(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    argv = ["train", "--config", str(path), "--output-dir", str(tmp_path / "run")]
    status, _, err = run(argv, capsys)
    assert status == 2
    assert "jmeta train: error: " + message.format(path=path) in err
    assert not (tmp_path / "run").exists()


def test_a_flag_overrides_a_bad_file_value_and_is_named_as_a_flag(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text("shots = 0")
    argv = ["train", "--config", str(path), "--shots", "-1", "--output-dir", str(tmp_path / "x")]
    status, _, err = run(argv, capsys)
    assert status == 2 and "jmeta train: error: --shots must be >= 1; got -1" in err


def test_every_field_round_trips_through_its_generated_flag():
    """Each field's flag parses back to the value: flags are generated from the fields."""
    config = TrainConfig(dataset="omniglot", data_dir="d", image_size=28, augment=True, ways=7,
                         test_inner_steps=(2, 4), first_order=True, conv_impl="xla",
                         output_dir="o", meta_lr=0.5, rotations=False, devices=2,
                         coordinator_address="h:1", num_processes=2, process_id=1,
                         seeds=(1, 2), time_limit=60.0)  # fmt: skip
    argv = ["train"]
    for name, value in config.to_dict().items():
        flag = "--algo" if name == "algorithm" else "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        elif value is not None:
            argv += [flag, str(value)]
    args = vars(build_parser().parse_args(argv))
    assert set(args) == set(FIELDS) | {"command", "handler"}
    assert TrainConfig(**{k: args[k] for k in FIELDS}) == config


def test_a_registered_algorithm_is_a_choice_of_algo(capsys):
    try:
        register_algorithm("fomaml_copy", ALGORITHMS["fomaml"].build)
        status, out, _ = run(["train", "--help"], capsys)
        assert status == 0 and "fomaml_copy" in out
    finally:
        ALGORITHMS.pop("fomaml_copy", None)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tasks", "1"], "--tasks must be >= 2 for a confidence interval; got 1"),
        (["--seed", "4294967295"], "--seed must be <= 4294967294 (seeds are uint32"),
        (["--inner-steps", "1", "2147483648"], "--inner-steps must be <= 2147483647"),
    ],
)
def test_eval_names_its_own_flags(tmp_path, capsys, argv, message):
    (tmp_path / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    status, _, err = run(["eval", "--checkpoint", str(tmp_path), *argv], capsys)
    assert status == 2 and f"jmeta eval: error: {message}" in err


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
            "--devices", "1", "--output-dir", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
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
