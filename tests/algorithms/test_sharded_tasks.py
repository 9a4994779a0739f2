"""The new algorithms' custom machinery (iMAML's custom VJP and CG, R2D2's solve) shards.

The meta-step vmaps ``meta_loss`` over tasks, so placing the task axis across
devices must give the single-device meta-gradient.
"""

import functools

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from toy import clusters_task, embed_apply, embed_init, mlp_apply, mlp_init

import jmeta
from jmeta.algorithms import imaml, r2d2

CASES = {
    "imaml": (
        lambda: imaml(mlp_apply, jmeta.losses.mse, lam=2.0, inner_lr=0.05, num_steps=3),
        lambda: mlp_init(jax.random.key(0)),
        jmeta.tasks.sinusoid,
    ),
    "r2d2": (
        lambda: r2d2(embed_apply, shots=2),
        lambda: embed_init(jax.random.key(0)),
        clusters_task,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_task_sharded_meta_gradient_equals_single_device(name):
    make_learner, make_params, sample = CASES[name]
    learner = make_learner()
    meta_params = learner.init(make_params())
    devices = jax.devices()
    if len(devices) < 2:
        pytest.skip("needs several (simulated) devices; tests/conftest.py sets 8")
    tasks = jax.jit(functools.partial(jmeta.tasks.sample_tasks, sample, batch_size=len(devices)))(
        jax.random.key(1)
    )
    grad = jax.jit(lambda p, t: jmeta.meta_gradient(learner, p, t, jax.random.key(2))[0])
    single = grad(meta_params, tasks)
    mesh = Mesh(np.array(devices), ("tasks",))
    sharded_tasks = jax.device_put(tasks, NamedSharding(mesh, PartitionSpec("tasks")))
    sharded = grad(meta_params, sharded_tasks)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-5), sharded, single
    )
