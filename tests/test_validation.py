"""Bad input gets a clear error naming the argument and the expected shape."""

import jax
import jax.numpy as jnp
import optax
import pytest
from toy import mlp_apply, mlp_init

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
