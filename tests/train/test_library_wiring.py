"""The trainer passes the library's policies and checks through: batch norm, label causes."""

import jax
import numpy as np
import pytest
from tiny_runs import fake_omniglot, tiny_omniglot

import jmeta
from jmeta.train import ALGORITHMS, TrainingDiverged, register_algorithm, train
from jmeta.train.build import build_learners
from jmeta.train.config import resolve_config
from jmeta.train.problem import build_problem

pytestmark = pytest.mark.standard_promotion  # the trainer's optax.adam


@pytest.mark.parametrize("algorithm", ["protonet", "matching_net", "r2d2"])
def test_batch_norm_support_reaches_the_metric_learners(tmp_path, algorithm):
    # `jmeta train --algo protonet --batch-norm support`: each query's prediction
    # must not depend on the other queries.
    data = fake_omniglot(tmp_path / "omniglot")
    config = resolve_config(
        tiny_omniglot(tmp_path / "run", data, algorithm=algorithm, batch_norm="support")
    )
    problem = build_problem(config, splits=("train",))
    learner, _ = build_learners(config, problem)
    meta_params = learner.init(problem.model.init(jax.random.key(0)))
    task = problem.train.sample(jax.random.key(1), problem.train.data)
    altered = task.query.x.at[0].set(1.0 - task.query.x[0])

    @jax.jit
    def predict(query_x):
        return learner.predict(learner.adapt(meta_params, task.support), query_x)

    before, after = np.asarray(predict(task.query.x)), np.asarray(predict(altered))
    np.testing.assert_array_equal(before[1:], after[1:])
    assert not np.array_equal(before[0], after[0])


def test_labels_that_do_not_fit_are_not_blamed_on_the_learning_rate(tmp_path):
    # An algorithm entry wired to a model with fewer outputs than --ways.
    def two_outputs(spec):
        return jmeta.maml(
            lambda p, x: spec.model.apply(p, x)[:, :2],
            spec.loss_fn,
            inner_lr=spec.inner_lr,
            num_steps=spec.inner_steps,
            metrics=dict(spec.metrics),
        )

    register_algorithm("two_outputs", two_outputs)
    try:
        data = fake_omniglot(tmp_path / "omniglot")
        config = tiny_omniglot(tmp_path / "run", data, algorithm="two_outputs", ways=3)
        with pytest.raises(TrainingDiverged) as info:
            train(config, progress=False)
    finally:
        ALGORITHMS.pop("two_outputs")
    message = str(info.value)
    assert "meta-step 1 was skipped: the task labels do not fit the learner" in message
    assert "--ways (3)" in message and "--meta-lr" not in message
