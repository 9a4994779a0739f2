"""--test-ways: training with more ways than validation and test (ProtoNets' recipe)."""

import json

import jax
import numpy as np
import pytest
from tiny_runs import fake_omniglot, tiny_omniglot
from tiny_runs import run_cli as run

import jmeta
from jmeta.train import ConfigValueError, TrainConfig, evaluate_checkpoint
from jmeta.train.loop import run as run_training
from jmeta.train.loop import setup
from jmeta.train.problem import build_problem

pytestmark = pytest.mark.standard_promotion  # the meta-optimizer is optax.adam


def _ways(split) -> int:
    """Classes of a task that ``split`` samples (its support labels are 0..ways-1, 1 shot)."""
    task = split.sample(jax.random.key(0), split.data)
    return int(np.asarray(task.support.y).max()) + 1


def test_test_ways_defaults_to_ways_and_follows_it():
    config = TrainConfig(dataset="omniglot", ways=20)
    assert config.test_ways == 20 and config.replace(ways=5).test_ways == 5
    config = TrainConfig(dataset="omniglot", algorithm="protonet", ways=60, test_ways=5)
    assert (config.ways, config.test_ways) == (60, 5)
    assert config.replace(ways=30).test_ways == 5  # given: kept
    assert TrainConfig().test_ways is None  # sinusoid: no classes


@pytest.mark.parametrize(
    "values, error, message",
    [
        ({"algorithm": "maml", "ways": 5, "test_ways": 20}, ConfigValueError,
         "test_ways (20) is larger than ways (5): maml classifies with a head of 5 outputs"),
        ({"algorithm": "mamlpp", "ways": 5, "test_ways": 6}, ConfigValueError,
         "test_ways (6) is larger than ways (5)"),
        ({"test_ways": 0}, ConfigValueError, "test_ways must be >= 1; got 0."),
        ({"test_ways": "5"}, TypeError, "test_ways must be an integer; got '5'."),
        ({"dataset": "sinusoid", "test_ways": 5}, ConfigValueError,
         "test_ways does not apply to sinusoid regression."),
    ],
)  # fmt: skip
def test_bad_test_ways_are_named(values, error, message):
    with pytest.raises(error) as info:
        TrainConfig(**{"dataset": "omniglot", **values})
    assert message in str(info.value)


def test_a_head_tests_with_fewer_ways_and_metric_learners_with_more():
    assert TrainConfig(dataset="omniglot", ways=5, test_ways=3).test_ways == 3
    for algorithm in ("protonet", "matching_net", "r2d2", "baseline"):
        assert TrainConfig(dataset="omniglot", algorithm=algorithm, test_ways=20).test_ways == 20


def test_more_test_ways_than_the_split_has_classes_names_the_field(tmp_path):
    data = fake_omniglot(tmp_path / "omniglot")  # 4 validation classes
    config = tiny_omniglot(tmp_path / "run", data, algorithm="protonet", test_ways=6)
    with pytest.raises(ConfigValueError) as info:
        build_problem(config)
    assert info.value.fields == ("test_ways",)
    assert str(info.value) == (
        "test_ways=6 needs 6 distinct classes, but the val split 'minimal-val' of omniglot has "
        "4 classes."
    )
    # Not given: test_ways is ways, and the message names ways (the flag the user passed).
    with pytest.raises(ConfigValueError, match="^ways=6 needs 6 distinct classes, but the val"):
        build_problem(config.replace(test_ways=None, ways=6))


def test_cli_names_test_ways(tmp_path, capsys):
    data = fake_omniglot(tmp_path / "omniglot")
    base = ["train", "--dataset", "omniglot", "--data-dir", data, "--image-size", "16",
            "--queries", "2", "--test-queries", "2", "--output-dir", tmp_path / "run"]  # fmt: skip
    status, _, err = run([*base, "--algo", "protonet", "--test-ways", "6"], capsys)
    assert status == 2 and "jmeta train: error: --test-ways=6 needs 6 distinct classes" in err
    status, _, err = run([*base, "--ways", "3", "--test-ways", "4"], capsys)
    assert status == 2
    assert "error: --test-ways (4) is larger than --ways (3): maml classifies with a head" in err
    assert not (tmp_path / "run").exists()
    assert "--test-ways TEST_WAYS" in run(["train", "--help"], capsys)[1]
    assert "--ways WAYS" in run(["eval", "--help"], capsys)[1]


def test_a_run_trained_10_way_validates_and_tests_5_way(tmp_path, monkeypatch):
    data = fake_omniglot(tmp_path / "omniglot", characters=5)  # 5 validation classes
    config = tiny_omniglot(tmp_path / "run", data, algorithm="protonet", ways=10, test_ways=5,
                           keep_best=True)  # fmt: skip
    prepared = setup(config)
    assert (_ways(prepared.problem.train), _ways(prepared.problem.val)) == (10, 5)
    assert _ways(prepared.problem.test) == 5
    seen = []
    evaluate = jmeta.evaluate

    def spy(learner, meta_params, sample, *args, data, **kwargs):
        task = sample(jax.random.key(1), data)
        seen.append(int(np.asarray(task.query.y).max()) + 1)
        return evaluate(learner, meta_params, sample, *args, data=data, **kwargs)

    monkeypatch.setattr(jmeta, "evaluate", spy)
    result = run_training(prepared, progress=False)
    assert seen == [5, 5, 5]  # validation at steps 3 and 6, then the test
    assert "omniglot minimal-test, 5-way 1-shot (trained 10-way)" in result.summary()
    monkeypatch.setattr(jmeta, "evaluate", evaluate)

    # jmeta eval scores the run's 5-way tasks by default (the test's score), and other ways on
    # request: a metric learner takes any number of classes.
    scores, step = evaluate_checkpoint(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert scores[1]["accuracy"].mean == saved["test"]["1"]["accuracy"]["mean"]
    monkeypatch.setattr(jmeta, "evaluate", spy)
    evaluate_checkpoint(tmp_path / "run", ways=3)
    assert seen[-1] == 3
    with pytest.raises(ConfigValueError, match="^ways=11 needs 11 distinct classes, but the test"):
        evaluate_checkpoint(tmp_path / "run", ways=11)


def test_eval_refuses_more_ways_than_a_head_has(tmp_path, capsys):
    data = fake_omniglot(tmp_path / "omniglot")
    config = tiny_omniglot(tmp_path / "run", data, ways=3, test_ways=2, num_steps=3)
    result = jmeta.train.train(config, progress=False)
    assert "2-way 1-shot (trained 3-way)" in result.summary()
    status, out, err = run(["eval", "--checkpoint", tmp_path / "run", "--ways", "3"], capsys)
    assert status == 0 and "test split: 6 fixed 3-way tasks" in out
    status, _, err = run(["eval", "--checkpoint", tmp_path / "run", "--ways", "4"], capsys)
    assert status == 2
    assert err.strip().endswith(
        "jmeta eval: error: --ways (4) is larger than the run's training ways (3): maml "
        "classifies with a head of 3 outputs, one per class of a training task; test with at "
        "most 3 ways, or train with more."
    )
    status, _, err = run(["eval", "--checkpoint", tmp_path / "run", "--ways", "0"], capsys)
    assert status == 2 and "jmeta eval: error: --ways must be >= 1; got 0." in err
