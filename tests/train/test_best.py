"""--keep-best and --early-stop: the best checkpoint by validation score, and stopping."""

import json
import shutil

import jax
import numpy as np
import pytest
from tiny_runs import tiny_sinusoid

from jmeta.cli import main
from jmeta.train import Checkpoints, ConfigValueError, TrainConfig, evaluate_checkpoint, train
from jmeta.train.best import Best, replay, stop_reason
from jmeta.train.logs import read_metrics

pytestmark = pytest.mark.standard_promotion  # the meta-optimizer is optax.adam


def test_standing_follows_the_best_score_and_counts_validations_since():
    acc = Best("accuracy")
    for step, value in [(5, 0.5), (10, 0.7), (15, 0.7), (20, 0.6), (25, float("nan"))]:
        acc = acc.update(step, value)
    assert (acc.step, acc.value, acc.since) == (10, 0.7, 3)  # a tie is no improvement
    assert stop_reason(acc, 3) == "early_stop" and stop_reason(acc, 4) is None
    assert stop_reason(acc, 0) is None
    loss = Best("loss").update(5, 2.0).update(10, 1.0)
    assert (loss.step, loss.since, loss.improved) == (10, 0, True)
    records = [{"split": "train", "step": 5, "loss": 0.0}, {"split": "val", "step": 5,
               "loss": 3.0}, {"split": "val", "step": 10, "loss": 4.0}]  # fmt: skip
    assert replay("loss", records) == Best("loss", 5, 3.0, 1)


def test_keep_best_and_early_stop_need_validation():
    with pytest.raises(ConfigValueError, match="keep_best needs validation: set eval_interval"):
        TrainConfig(keep_best=True, eval_interval=0, checkpoint_interval=1000)
    with pytest.raises(ConfigValueError, match="early_stop needs validation"):
        TrainConfig(dataset="omniglot", early_stop=2, val_split="none")
    with pytest.raises(ConfigValueError, match="early_stop must be >= 0"):
        TrainConfig(early_stop=-1)


@pytest.fixture(scope="module")
def best_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("best") / "run"
    config = tiny_sinusoid(out, keep_best=True, eval_interval=5, num_steps=20)
    with jax.numpy_dtype_promotion("standard"):
        return train(config, progress=False)


def test_keep_best_keeps_the_best_validated_state_and_the_test_scores_it(best_run):
    out = best_run.output_dir
    vals = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "val"]
    best = min(vals, key=lambda r: (r["loss"], r["step"]))
    assert Checkpoints(out / "best").steps() == [best["step"]]
    assert Checkpoints(out / "best").made_by(best["step"])["algorithm"] == "maml"
    results = json.loads((out / "results.json").read_text())
    assert results["best"] == {"step": best["step"], "metric": "loss", "value": best["loss"]}
    assert results["tested_step"] == best["step"]
    assert results["stopped"]["reason"] == "num_steps" and results["step"] == 20
    with jax.numpy_dtype_promotion("standard"):
        scores, step = evaluate_checkpoint(out)  # the best one by default
        latest, last = evaluate_checkpoint(out / "checkpoints")
    assert step == best["step"] and last == 20
    assert scores[1]["loss"].mean == results["test"]["1"]["loss"]["mean"]
    if best["step"] != 20:
        assert latest[1]["loss"].mean != scores[1]["loss"].mean


def test_jmeta_eval_says_it_scored_the_best_checkpoint(best_run, capsys):
    out = best_run.output_dir
    step = json.loads((out / "results.json").read_text())["best"]["step"]
    with jax.numpy_dtype_promotion("standard"):
        assert main(["eval", "--checkpoint", str(out), "--tasks", "4"]) == 0
    assert f"maml best checkpoint (by validation score) at step {step}" in capsys.readouterr().out


def test_a_damaged_best_checkpoint_is_reported_and_the_newest_scored(best_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(best_run.output_dir, out)
    (step,) = Checkpoints(out / "best").steps()
    (out / "best" / str(step) / "checkpoint.json").unlink()
    with jax.numpy_dtype_promotion("standard"), pytest.warns(UserWarning, match="best checkp"):
        _, scored = evaluate_checkpoint(out, num_tasks=4)
    assert scored == 20


def test_early_stop_stops_after_validations_without_improvement(tmp_path):
    # A step size that moves no float32 parameter: every validation ties the first.
    config = tiny_sinusoid(tmp_path / "run", early_stop=2, eval_interval=5, meta_lr=1e-30)
    with jax.numpy_dtype_promotion("standard"):
        result = train(config, progress=False)
    assert int(result.state.step) == 15
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["stopped"] == {"reason": "early_stop", "step": 15,
                                  "validations_without_improvement": 2}  # fmt: skip
    assert results["best"]["step"] == 5 and results["tested_step"] == 15
    assert Checkpoints(tmp_path / "run" / "checkpoints").latest() == 15
    assert not (tmp_path / "run" / "best").exists()
    # Resumed with more steps, it stays stopped: the standing is rebuilt from metrics.jsonl.
    with jax.numpy_dtype_promotion("standard"):
        again = train(config.replace(num_steps=40), resume=True, progress=False)
    assert int(again.state.step) == 15
    np.testing.assert_array_equal(
        jax.tree.leaves(again.state.meta_params)[0], jax.tree.leaves(result.state.meta_params)[0]
    )
