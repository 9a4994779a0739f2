import functools

import jax
import numpy as np
import pytest
from toy import mlp_apply, mlp_init

import jmeta
from jmeta.evaluation import mean_ci, task_keys


def test_mean_ci_matches_the_textbook_formula():
    v = np.array([1.0, 2.0, 3.0, 4.0])
    est = mean_ci(v)
    assert est.mean == 2.5 and est.num == 4
    assert est.ci95 == pytest.approx(1.959963984540054 * np.std(v, ddof=1) / 2)
    with pytest.raises(ValueError):
        mean_ci([])


def test_fixed_task_set_is_independent_of_batch_size():
    learner = jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.05)
    theta = mlp_init(jax.random.key(0))
    sample = functools.partial(jmeta.tasks.sinusoid, num_support=5, num_query=5)
    a = jmeta.evaluate(learner, theta, sample, num_tasks=30, batch_size=7, num_steps=3)
    b = jmeta.evaluate(learner, theta, sample, num_tasks=30, batch_size=30, num_steps=3)
    assert a["loss"].mean == pytest.approx(b["loss"].mean, rel=1e-5)
    assert a["loss"].num == 30
    c = jmeta.evaluate(learner, theta, sample, num_tasks=30, seed=1, num_steps=3)
    assert c["loss"].mean != pytest.approx(a["loss"].mean, rel=1e-5)
    assert len(np.unique(np.asarray(jax.random.key_data(task_keys(0, 30))), axis=0)) == 30


def test_data_argument_matches_a_closed_over_data_set():
    """``data=`` passes the data set as an argument of the compiled call, not a constant."""
    images = np.random.default_rng(0).integers(0, 256, (6, 5, 4, 4, 1), dtype=np.uint8)
    sample = functools.partial(jmeta.tasks.few_shot, ways=3, shots=1, queries=2)

    def apply(params, x):
        return x.reshape(x.shape[0], -1) @ params["head"]["kernel"]

    learner = jmeta.maml(apply, jmeta.losses.cross_entropy, inner_lr=0.5)
    params = {"head": {"kernel": jax.random.normal(jax.random.key(0), (16, 3))}}
    closed = jmeta.evaluate(learner, params, lambda k, _: sample(k, images), num_tasks=20)
    passed = jmeta.evaluate(learner, params, sample, num_tasks=20, data=images)
    assert passed["loss"].mean == pytest.approx(closed["loss"].mean, rel=1e-6)
    other = jmeta.evaluate(learner, params, sample, num_tasks=20, data=255 - images)
    assert other["loss"].mean != pytest.approx(passed["loss"].mean, rel=1e-6)
