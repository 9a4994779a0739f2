import json
import shutil

import chex
import jax
import numpy as np
import pytest
from tiny_runs import fake_omniglot, tiny_omniglot, tiny_sinusoid

from jmeta.train import (
    Checkpoints,
    TrainingDiverged,
    read_metrics,
    resolve_config,
    train,
)
from jmeta.train.logs import TIMING_KEYS
from jmeta.train.loop import setup

pytestmark = pytest.mark.standard_promotion  # the meta-optimizer is optax.adam


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def assert_trees_equal(a, b):
    chex.assert_trees_all_equal(a, b)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The tiny sinusoid run, uninterrupted: the reference the other runs are compared with."""
    out = tmp_path_factory.mktemp("runs") / "full"
    with jax.numpy_dtype_promotion("standard"):
        return train(tiny_sinusoid(out), progress=False)


def test_sinusoid_run_writes_every_output(full_run):
    result, out = full_run, full_run.output_dir
    assert int(result.state.step) == 20
    assert sorted(p.name for p in out.iterdir()) == [
        ".jmeta-lock",
        "checkpoints",
        "config.json",
        "curves.png",
        "jmeta-run.json",
        "metrics.jsonl",
        "results.json",
        "timings.json",
    ]
    assert Checkpoints(out / "checkpoints").steps() == [10, 20]
    records = read_metrics(out / "metrics.jsonl")
    assert [(r["split"], r["step"]) for r in records] == [
        ("train", 5),
        ("train", 10),
        ("val", 10),
        ("train", 15),
        ("train", 20),
        ("val", 20),
        ("test", 20),
        ("test", 20),
    ]
    assert {"loss", "grad_norm", "tasks_per_s", "seconds"} <= set(records[0])
    assert set(result.test) == {1, 2}
    after, before = result.test[2]["loss"], result.test[2]["loss_before"]
    assert after.num == 16 and after.mean < before.mean
    saved = json.loads((out / "results.json").read_text())
    assert set(saved) == {"step", "test"}  # scores only: timings are in timings.json
    assert saved["test"]["2"]["loss"]["mean"] == after.mean
    (session,) = json.loads((out / "timings.json").read_text())["sessions"]
    assert (session["from_step"], session["to_step"]) == (0, 20) and session["seconds"] > 0
    record = json.loads((out / "jmeta-run.json").read_text())
    assert (record["format"], record["checkpointed"], record["resumes"]) == (1, True, [])
    assert Checkpoints(out / "checkpoints").made_by(20)["algorithm"] == "maml"
    config = json.loads((out / "config.json").read_text())
    assert config["num_steps"] == 20 and config["output_dir"] == str(out)
    assert "MSE after adaptation" in result.summary()


def test_same_seed_same_run_other_seed_other_run(full_run, tmp_path):
    again = train(tiny_sinusoid(tmp_path / "again"), progress=False)
    assert_trees_equal(full_run.state, again.state)
    assert again.test == full_run.test
    assert without_timing(read_metrics(tmp_path / "again/metrics.jsonl")) == without_timing(
        read_metrics(full_run.output_dir / "metrics.jsonl")
    )
    train(
        tiny_sinusoid(tmp_path / "other", seed=1, num_steps=5, eval_interval=0,
                      checkpoint_interval=0, test_inner_steps=(1,)),
        progress=False,
    )  # fmt: skip
    first = read_metrics(full_run.output_dir / "metrics.jsonl")[0]
    assert read_metrics(tmp_path / "other/metrics.jsonl")[0]["loss"] != first["loss"]


def test_resume_continues_exactly_and_may_extend(full_run, tmp_path):
    part = tmp_path / "part"
    train(tiny_sinusoid(part, num_steps=10), progress=False)
    resumed = train(tiny_sinusoid(part), resume=True, progress=False)
    assert_trees_equal(full_run.state, resumed.state)
    assert resumed.test == full_run.test
    assert without_timing(read_metrics(part / "metrics.jsonl")) == without_timing(
        read_metrics(full_run.output_dir / "metrics.jsonl")
    )
    # Scores apart from timings: "same results" is a byte comparison (`cmp`).
    assert (part / "results.json").read_bytes() == (
        full_run.output_dir / "results.json"
    ).read_bytes()


def test_a_time_limit_stops_after_a_compiled_call_and_resume_continues_exactly(full_run, tmp_path):
    part = tmp_path / "part"
    stopped = train(tiny_sinusoid(part, time_limit=1e-6), progress=False)
    assert int(stopped.state.step) == 5  # one call of steps_per_call steps, then the check
    results = json.loads((part / "results.json").read_text())
    assert results["stopped"] == {"reason": "time_limit", "step": 5}
    assert Checkpoints(part / "checkpoints").steps() == [5]
    assert [r["split"] for r in read_metrics(part / "metrics.jsonl")] == ["train", "test", "test"]
    resumed = train(tiny_sinusoid(part), resume=True, progress=False)  # the limit dropped
    assert_trees_equal(full_run.state, resumed.state)
    assert (part / "results.json").read_bytes() == (
        full_run.output_dir / "results.json"
    ).read_bytes()
    with pytest.raises(ValueError, match="time_limit must be a finite number > 0; got 0.0"):
        tiny_sinusoid(part, time_limit=0)


def test_existing_runs_are_never_overwritten_silently(full_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(full_run.output_dir, out)
    config = tiny_sinusoid(out)
    with pytest.raises(
        FileExistsError,
        match=r"already holds a run \(jmeta-run.json, config.json, metrics.jsonl, results.json, "
        r"timings.json, curves.png, checkpoints/\)\. Pass --resume .* --overwrite",
    ):
        train(config, progress=False)
    with pytest.raises(ValueError, match="contradict"):
        train(config, resume=True, overwrite=True, progress=False)


def test_non_finite_loss_stops_and_keeps_no_checkpoint_that_cannot_continue(tmp_path):
    # Plain SGD with a huge meta step size: meta-step 3 goes non-finite, from the
    # parameters after step 2, so checkpoint 2 cannot be continued from either.
    config = tiny_sinusoid(
        tmp_path / "run", meta_optimizer="sgd", meta_lr=30.0, num_steps=200,
        steps_per_call=2, eval_interval=0, checkpoint_interval=2,
    )  # fmt: skip
    with pytest.raises(
        TrainingDiverged,
        match=r"meta-step 3 gave a non-finite .* Checkpoint 2 was deleted: .* `--resume "
        r"--meta-lr 3` continues from step 0 \(no checkpoint precedes the divergence\)",
    ) as info:
        train(config, progress=False)
    err = info.value
    assert (err.step, err.last_checkpoint) == (2, None)
    assert Checkpoints(tmp_path / "run/checkpoints").steps() == []
    records = read_metrics(tmp_path / "run/metrics.jsonl")
    assert all(np.isfinite(r["loss"]) for r in records) and records[-1]["step"] == err.step
    assert not (tmp_path / "run/results.json").exists()
    # The advice can be followed: from step 0, since no checkpoint precedes the divergence,
    # also after a first try that stopped before its first checkpoint (here: right after setup).
    smaller = config.replace(meta_lr=0.3, num_steps=4)
    setup(smaller, resume=True).folder.close()
    result = train(smaller, resume=True, progress=False)
    assert int(result.state.step) == 4 and np.isfinite(result.test[1]["loss"].mean)
    assert [r["step"] for r in read_metrics(tmp_path / "run/metrics.jsonl")][:2] == [2, 4]


def test_a_state_with_non_finite_parameters_is_never_saved(tmp_path):
    # A meta step size near float32's largest number, and a large meta-gradient (norm 92,
    # from a large inner step size): the first update overflows the parameters to infinity
    # while its own loss and gradient were finite.
    config = tiny_sinusoid(
        tmp_path / "run", meta_optimizer="sgd", meta_lr=1e38, inner_lr=3.0, num_steps=4,
        steps_per_call=1, eval_interval=0, checkpoint_interval=1, test_inner_steps=(1,),
    )  # fmt: skip
    with pytest.raises(
        TrainingDiverged,
        match=r"meta-step 1 made the parameters \(or optimizer state\) non-finite: an update "
        r"overflowed; training stopped and this state was not saved\.",
    ):
        train(config, progress=False)
    assert Checkpoints(tmp_path / "run/checkpoints").steps() == []


def test_tiny_omniglot_end_to_end(tmp_path):
    data = fake_omniglot(tmp_path / "omniglot")
    config = tiny_omniglot(tmp_path / "run", data, augment=True, affine=True, val_split="none")
    result = train(config, progress=False)
    assert result.config.rotations is True and int(result.state.step) == 6
    accuracy = result.test[1]["accuracy"]
    assert accuracy.num == 6 and 0.0 <= accuracy.mean <= 1.0
    assert result.state.meta_params["head"]["kernel"].shape == (4, 3)
    assert "omniglot minimal-test, 3-way 1-shot" in result.summary()
    assert {r["split"] for r in read_metrics(tmp_path / "run/metrics.jsonl")} == {"train", "test"}


def test_split_too_small_for_the_tasks_names_the_split(tmp_path):
    data = fake_omniglot(tmp_path / "omniglot")
    with pytest.raises(
        ValueError, match=r"ways=5 .* the val split 'minimal-val' of omniglot has 4 classes"
    ):
        train(tiny_omniglot(tmp_path / "run", data, ways=5), progress=False)
    assert not (tmp_path / "run").exists()  # nothing written before the data are checked
    with pytest.raises(
        ValueError, match=r"1 \+ 4 = 5 .* the train split 'minimal-train' .* only 4"
    ):
        train(tiny_omniglot(tmp_path / "run", data, queries=4), progress=False)


@pytest.mark.parametrize("algorithm", ["protonet", "matching_net", "r2d2"])
def test_metric_algorithms_train_an_embedding_network(tmp_path, algorithm):
    data = fake_omniglot(tmp_path / "omniglot")
    config = tiny_omniglot(tmp_path / "run", data, algorithm=algorithm, val_split="none")
    result = train(config, progress=False)
    assert "head" not in result.state.meta_params.embedding  # features, not logits
    accuracy = result.test[1]["accuracy"]
    assert accuracy.num == 6 and 0.0 <= accuracy.mean <= 1.0
    assert "accuracy_before" not in result.test[1]
    assert "no inner loop" in result.summary()


def test_cavia_adapts_a_context_on_sinusoid(tmp_path):
    result = train(tiny_sinusoid(tmp_path / "run", algorithm="cavia", inner_lr=1.0), progress=False)
    kernel = result.state.meta_params["layer0"]["kernel"]
    assert kernel.shape[0] == 1 + 5  # x and the five context inputs
    mse = result.test[2]["loss"]
    assert np.isfinite(mse.mean) and mse.mean < result.test[2]["loss_before"].mean


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"algorithm": "protonet"}, "^algorithm protonet .* needs an image data set"),
        ({"algorithm": "cavia", "dataset": "omniglot"}, "^algorithm cavia .* sinusoid regression"),
    ],
)
def test_algorithm_and_data_set_must_fit(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        resolve_config(tiny_sinusoid(tmp_path / "run", **changes))
