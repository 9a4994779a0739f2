"""Shared pieces of the multi-device tests: a learner and tasks that differ across devices."""

import jax
import jax.numpy as jnp
import numpy as np
from toy import mlp_apply, mlp_init

import jmeta

NUM_TASKS = 16


def learner(num_steps=2):
    """Second-order MAML on a tiny tanh MLP."""
    return jmeta.maml(mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=num_steps)


def init_params():
    return mlp_init(jax.random.key(0))


def heterogeneous_tasks(key, num_tasks=NUM_TASKS):
    """Sinusoid tasks whose scale grows 100x along the task axis.

    Every device's block of tasks is very different from the others', so an
    inner loop that saw another device's gradients, or a meta-gradient summed
    instead of averaged, would give a visibly different answer.
    """
    tasks = jmeta.tasks.sample_tasks(jmeta.tasks.sinusoid, key, num_tasks)
    scale = jnp.geomspace(0.1, 10.0, num_tasks, dtype=jnp.float32)[:, None, None]
    return tasks._replace(
        support=tasks.support._replace(y=tasks.support.y * scale),
        query=tasks.query._replace(y=tasks.query.y * scale),
    )


def sample_heterogeneous(key, data=None):
    """A batch sampler `(key, data) -> Task` of NUM_TASKS heterogeneous tasks (no data)."""
    return heterogeneous_tasks(key, NUM_TASKS)


#: float32 tolerance for "the same computation split differently over devices":
#: the sums over tasks run in another order, and XLA:CPU's vectorised
#: reductions differ between CPU models (about 7e-5 relative seen on an AMD EPYC
#: for the heterogeneous tasks below). The wrong wirings these tests exist to
#: catch (a device adapting with every device's gradients) differ by more than
#: 1e-3.
RTOL, ATOL = 2e-4, 1e-5


def assert_trees_close(actual, expected, rtol=RTOL, atol=ATOL):
    """Compare two pytrees leaf by leaf (bools exactly)."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype == bool:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


class TraceCounter:
    """Wraps a function and counts how often JAX traces it."""

    def __init__(self, fn):
        self.fn, self.count = fn, 0

    def __call__(self, *args):
        self.count += 1
        return self.fn(*args)
