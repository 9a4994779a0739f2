"""Bad input gets a clear error naming the argument and the expected shape."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from toy import clusters_task, embed_apply, embed_init, mlp_apply, mlp_init

import jmeta


def task(ns=5, nq=4, d=1):
    return jmeta.Task(
        jmeta.Batch(jnp.zeros((ns, d)), jnp.zeros((ns, 1))),
        jmeta.Batch(jnp.zeros((nq, d)), jnp.zeros((nq, 1))),
    )


LEARNER = jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.1)
THETA = mlp_init(jax.random.key(0))


def test_mismatched_support_and_query_shapes():
    bad = task()._replace(query=jmeta.Batch(jnp.zeros((4, 2)), jnp.zeros((4, 1))))
    with pytest.raises(
        ValueError,
        match=r"task.support.x and task.query.x must have the same per-example shape; got \(1,\)",
    ):
        LEARNER.meta_loss(THETA, bad)


def test_x_and_y_disagree_on_examples():
    bad = task()._replace(support=jmeta.Batch(jnp.zeros((5, 1)), jnp.zeros((3, 1))))
    with pytest.raises(ValueError, match="task.support.x and task.support.y must agree"):
        LEARNER.meta_loss(THETA, bad)


def test_empty_support_and_empty_batch_of_tasks():
    with pytest.raises(ValueError, match="task.support is empty"):
        LEARNER.meta_loss(THETA, task(ns=0))
    tasks = jax.tree.map(lambda a: a[None][:0], task())
    with pytest.raises(ValueError, match="tasks.support is empty|batch of tasks is empty"):
        jmeta.meta_gradient(LEARNER, THETA, tasks, jax.random.key(0))


def test_batch_of_tasks_with_inconsistent_task_axis():
    tasks = jax.tree.map(lambda a: jnp.stack([a, a]), task())
    tasks = tasks._replace(query=jmeta.Batch(tasks.query.x[:1], tasks.query.y[:1]))
    with pytest.raises(ValueError, match="same leading task axis"):
        jmeta.meta_gradient(LEARNER, THETA, tasks, jax.random.key(0))


def test_unbatched_task_given_to_a_meta_step():
    step = jmeta.meta_train_step(LEARNER, optax.sgd(0.1))
    with pytest.raises(
        ValueError, match=r"tasks.support.y must be an array of shape \[tasks, n, ...\]"
    ):
        step.update(
            step.init(THETA),
            task()._replace(support=jmeta.Batch(jnp.zeros((5, 1)), jnp.zeros((5,)))),
            jax.random.key(0),
        )


def test_labels_outside_the_classes():
    learner = jmeta.maml(lambda p, x: x @ p, jmeta.losses.cross_entropy, inner_lr=0.1)
    t = jmeta.Task(
        jmeta.Batch(jnp.ones((2, 3)), jnp.array([0, 1])),
        jmeta.Batch(jnp.ones((2, 3)), jnp.array([0, 7])),
    )
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        learner.meta_loss(jnp.zeros((3, 2)), t)


def test_wrong_types():
    with pytest.raises(TypeError, match="jmeta.Task"):
        LEARNER.meta_loss(THETA, (1, 2))
    with pytest.raises(TypeError, match="support must be a jmeta.Batch"):
        LEARNER.adapt(THETA, (jnp.zeros((2, 1)), jnp.zeros((2, 1))))


# --- Label values under jit: flagged by name, never a NaN blamed on something else ---------

EMBED = embed_init(jax.random.key(0))


def three_outputs(params, x):  # a classifier with 3 outputs
    return embed_apply(params, x)[:, :3]


def clusters_batch(num, **kwargs):
    return jax.vmap(functools.partial(clusters_task, **kwargs))(
        jax.random.split(jax.random.key(1), num)
    )


def test_labels_beyond_the_model_outputs_under_jit_are_a_named_cause():
    # 3 outputs on 5-way tasks: eagerly a ValueError; under jit the step is skipped and says why.
    learner = jmeta.maml(three_outputs, jmeta.losses.cross_entropy, inner_lr=0.1)
    tasks = clusters_batch(2, ways=5, shots=1, queries=2)
    step = jmeta.meta_train_step(learner, optax.sgd(0.1))
    state = step.init(EMBED)
    new, metrics = jax.jit(step.update)(state, tasks, jax.random.key(2))
    assert not bool(metrics["finite"]) and float(metrics["labels_valid"]) == 0.0
    assert int(new.step) == 0
    chex.assert_trees_all_equal(new.meta_params, EMBED)
    assert "labels do not fit" in jmeta.step.nonfinite_cause(jax.device_get(metrics))
    # The loss itself is NaN, not a finite wrong number.
    loss, task_metrics = jax.jit(learner.meta_loss)(EMBED, jax.tree.map(lambda a: a[0], tasks))
    assert np.isnan(loss) and not bool(task_metrics["labels_valid"])


def test_fitting_labels_report_valid_and_regression_reports_nothing():
    learner = jmeta.maml(embed_apply, jmeta.losses.cross_entropy, inner_lr=0.1)
    params = embed_init(jax.random.key(0), sizes=(16, 32, 5))
    _, metrics = jax.jit(learner.meta_loss)(params, clusters_task(jax.random.key(1), ways=5))
    assert bool(metrics["labels_valid"]) and np.isfinite(metrics["loss"])
    _, metrics = LEARNER.meta_loss(THETA, task())  # sinusoid-like regression: nothing to check
    assert "labels_valid" not in metrics


def test_negative_labels_give_nan_loss_and_gradient_under_jit():
    # A negative index would otherwise pick a logit from the end: a finite, wrong loss.
    logits, labels = jnp.arange(6.0).reshape(2, 3), jnp.array([-1, 0])
    loss, grad = jax.jit(jax.value_and_grad(jmeta.losses.cross_entropy))(logits, labels)
    assert np.isnan(loss) and np.isnan(grad).all()
    loss = jax.jit(jmeta.losses.cross_entropy)(logits, jnp.array([2, 0]))
    assert np.isfinite(loss)


@pytest.mark.parametrize(
    ("builder", "task_options"),
    [
        # num_classes=5 on 10-way tasks: labels 5..9 have no class.
        (functools.partial(jmeta.protonet, num_classes=5), {"ways": 10, "shots": 1}),
        # shots=2 on 4-way 3-shot tasks reads 6 classes, two of them empty.
        (functools.partial(jmeta.protonet, shots=2), {"ways": 4, "shots": 3}),
        (functools.partial(jmeta.r2d2, shots=2), {"ways": 4, "shots": 3}),
        (functools.partial(jmeta.matching_net, num_classes=4), {"ways": 3, "shots": 2}),
    ],
)
def test_metric_learners_flag_labels_that_do_not_fit_under_jit(builder, task_options):
    learner = builder(embed_apply)
    meta_params = learner.init(EMBED)
    tasks = clusters_batch(2, queries=1, **task_options)
    loss, metrics = jax.jit(learner.meta_loss)(meta_params, jax.tree.map(lambda a: a[0], tasks))
    assert np.isnan(loss) and not bool(metrics["labels_valid"])
    # adapt + predict alone: NaN predictions, not silently wrong ones.
    predict = jax.jit(lambda p, t: learner.predict(learner.adapt(p, t.support), t.query.x))
    assert np.isnan(predict(meta_params, jax.tree.map(lambda a: a[0], tasks))).all()
    step = jmeta.meta_train_step(learner, optax.sgd(0.1), chunk_size=1)
    new, step_metrics = jax.jit(step.update)(step.init(meta_params), tasks, jax.random.key(0))
    assert not bool(step_metrics["finite"]) and float(step_metrics["labels_valid"]) == 0.0
    assert int(new.step) == 0


def test_metric_learners_accept_balanced_tasks_under_jit():
    for learner in (jmeta.protonet(embed_apply, shots=2), jmeta.r2d2(embed_apply, num_classes=4)):
        task_ = clusters_task(jax.random.key(3), ways=4, shots=2, queries=1)
        loss, metrics = jax.jit(learner.meta_loss)(learner.init(EMBED), task_)
        assert np.isfinite(loss) and bool(metrics["labels_valid"])
