"""The trainer's eval_rotations option: rotated validation and test classes (issue 12, item 6)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from tiny_runs import fake_omniglot, tiny_omniglot

import jmeta
from jmeta.cli import build_parser
from jmeta.train import TrainConfig, resolve_config
from jmeta.train.problem import build_problem


def test_default_is_off_and_the_flag_sets_it():
    assert resolve_config(TrainConfig(dataset="omniglot")).eval_rotations is False
    args = build_parser().parse_args(["train", "--eval-rotations"])
    assert args.eval_rotations is True
    args = build_parser().parse_args(["train", "--no-eval-rotations"])
    assert args.eval_rotations is False


@pytest.mark.parametrize(
    "changes, error, match",
    [
        ({"eval_rotations": True}, ValueError, "^eval_rotations does not apply to sinusoid"),
        (
            {"dataset": "omniglot", "eval_rotations": "yes"},
            TypeError,
            "^eval_rotations must be true or false; got 'yes'",
        ),
    ],
)
def test_bad_values_name_the_field(changes, error, match):
    with pytest.raises(error, match=match):
        resolve_config(TrainConfig(**changes))


def test_validation_and_test_tasks_come_from_rotated_classes(tmp_path):
    data = fake_omniglot(tmp_path / "omniglot")  # minimal-val: 4 characters, minimal-test: 8
    base = resolve_config(tiny_omniglot(tmp_path / "run", data, rotations=False, ways=9))
    with pytest.raises(
        ValueError, match=r"the val split 'minimal-val' of omniglot has 4 classes\.$"
    ):
        build_problem(base)
    config = base.replace(eval_rotations=True)
    build_problem(config)  # 9 of 4 x 4 rotated validation classes
    with pytest.raises(ValueError, match=r"'minimal-val' of omniglot has 4 classes \(16 with rota"):
        build_problem(config.replace(ways=17))
    problem = build_problem(config.replace(ways=16))
    key = jax.random.key(3)
    for split in (problem.val, problem.test):
        expected = jmeta.tasks.few_shot(
            key, split.data, ways=16, shots=1, queries=2, rotations=True
        )
        got = split.sample(key, split.data)
        np.testing.assert_array_equal(got.support.x, expected.support.x)
        np.testing.assert_array_equal(got.query.x, expected.query.x)
    # Training stays as --rotations says (off here): 20 characters, no rotations.
    train = problem.train
    expected = jmeta.tasks.few_shot(key, train.data, ways=16, shots=1, queries=2)
    np.testing.assert_array_equal(train.sample(key, train.data).support.x, expected.support.x)
