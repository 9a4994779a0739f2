"""The shared metric-based learner: number of classes, shapes, dtypes, the MetaLearner contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy import clusters_task, embed_apply, embed_init

import jmeta
from jmeta.algorithms import FittedClassifier, MetricParams, matching_net, protonet, r2d2

BUILDERS = [protonet, matching_net, r2d2]


@pytest.mark.parametrize("builder", BUILDERS)
def test_one_learner_serves_any_number_of_ways_given_shots(builder):
    learner = builder(embed_apply, shots=2)
    meta_params = learner.init(embed_init(jax.random.key(0)))
    scores = jax.jit(lambda p, t: learner.predict(learner.adapt(p, t.support), t.query.x))
    for ways in (10, 5):
        task = clusters_task(jax.random.key(ways), ways=ways, shots=2, queries=3)
        assert scores(meta_params, task).shape == (3 * ways, ways)


@pytest.mark.parametrize("builder", BUILDERS)
def test_meta_step_and_evaluation_contract(builder):
    learner = builder(embed_apply, num_classes=5)
    meta_params = learner.init(embed_init(jax.random.key(0)))
    assert isinstance(meta_params, MetricParams)
    tasks = jax.jit(lambda k: jmeta.tasks.sample_tasks(clusters_task, k, 3))(jax.random.key(1))
    loss, metrics = jax.jit(
        lambda p: jmeta.batched_meta_loss(learner, p, tasks, jax.random.key(2))
    )(meta_params)
    assert set(metrics) == {"loss", "accuracy", "labels_valid"} and loss.dtype == jnp.float32
    assert float(metrics["labels_valid"]) == 1.0
    per_task = jax.jit(lambda p: jmeta.evaluate_tasks(learner, p, tasks, jax.random.key(2)))(
        meta_params
    )
    np.testing.assert_allclose(per_task["loss"].mean(), loss, rtol=1e-5)
    assert isinstance(
        learner.adapt(meta_params, jax.tree.map(lambda a: a[0], tasks.support)), FittedClassifier
    )


def test_exactly_one_of_num_classes_or_shots():
    for kwargs in ({}, {"num_classes": 5, "shots": 1}):
        with pytest.raises(ValueError, match="exactly one of num_classes"):
            protonet(embed_apply, **kwargs)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        protonet(embed_apply, num_classes=0)


def test_shots_must_divide_the_support_set():
    learner = protonet(embed_apply, shots=3)
    task = clusters_task(jax.random.key(0), ways=5, shots=2)
    with pytest.raises(ValueError, match="not a multiple of shots=3"):
        learner.adapt(learner.init(embed_init(jax.random.key(0))), task.support)


def test_embeddings_must_be_flat():
    learner = protonet(lambda p, x: x[:, :, None], num_classes=5)
    task = clusters_task(jax.random.key(0))
    with pytest.raises(ValueError, match=r"embed_fn must return \[n, features\]"):
        learner.meta_loss(learner.init({}), task)


def test_low_precision_embeddings_are_scored_in_float32():
    learner = r2d2(lambda p, x: embed_apply(p, x.astype(jnp.bfloat16)), num_classes=5)
    meta_params = learner.init(embed_init(jax.random.key(0), dtype=jnp.bfloat16))
    assert meta_params.classifier["log_lam"].dtype == jnp.float32
    task = clusters_task(jax.random.key(1))
    logits = learner.predict(learner.adapt(meta_params, task.support), task.query.x)
    assert logits.dtype == jnp.float32


def test_learned_scalars_follow_float64_parameters(x64):
    meta_params = r2d2(embed_apply, num_classes=5).init(
        embed_init(jax.random.key(0), dtype=jnp.float64)
    )
    assert all(v.dtype == jnp.float64 for v in meta_params.classifier.values())
