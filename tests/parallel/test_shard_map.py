"""shard_map with an explicit pmean equals one device; the replicated-gradient trap is caught."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P
from parallel_helpers import (
    TraceCounter,
    assert_trees_close,
    heterogeneous_tasks,
    init_params,
    learner,
    sample_heterogeneous,
)

import jmeta
from jmeta import parallel


@pytest.fixture(scope="module")
def mesh():
    return parallel.task_mesh()


def per_device_meta_gradient(mesh, **kwargs):
    """``meta_gradient`` run by shard_map on each device's block of tasks."""
    lr = learner()

    def local(params, tasks, keys):
        return jmeta.meta_gradient(lr, params, tasks, keys, **kwargs)

    spec = P("tasks")
    return jax.jit(
        jax.shard_map(local, mesh=mesh, in_specs=(P(), spec, spec), out_specs=P(), check_vma=True)
    )


def test_shard_map_meta_gradient_equals_single_device_and_naive_version_does_not(mesh):
    tasks, key = heterogeneous_tasks(jax.random.key(1)), jax.random.key(2)
    keys = jax.random.split(key, tasks.support.x.shape[0])
    expected = jax.jit(lambda p, t, k: jmeta.meta_gradient(learner(), p, t, k))(
        init_params(), tasks, key
    )

    actual = per_device_meta_gradient(mesh, axis_name="tasks")(init_params(), tasks, keys)
    assert_trees_close(actual, expected)

    # Negative control: the same per-device program without marking the
    # parameters device-varying. JAX sums the gradient of the replicated
    # parameters over devices, inside the inner loop too, so every device
    # adapts with all devices' support gradients. Nothing fails loudly; only
    # the comparison with one device shows it.
    def naive(params, tasks, keys):
        grads, metrics = jax.grad(
            lambda p: jmeta.batched_meta_loss(learner(), p, tasks, keys), has_aux=True
        )(params)
        return jax.lax.pmean(grads, "tasks"), jax.lax.pmean(metrics, "tasks")

    spec = P("tasks")
    wrong_grads, wrong_metrics = jax.jit(
        jax.shard_map(naive, mesh=mesh, in_specs=(P(), spec, spec), out_specs=P())
    )(init_params(), tasks, keys)
    assert not np.allclose(wrong_metrics["loss"], expected[1]["loss"], rtol=1e-3)
    kernel, wrong_kernel = expected[0]["head"]["kernel"], wrong_grads["head"]["kernel"]
    assert not np.allclose(wrong_kernel, kernel, rtol=1e-2)


def test_each_device_adapts_on_its_own_tasks_only(mesh):
    """Per-task adapted parameters inside shard_map equal the one-device vmap."""
    lr, tasks = learner(), heterogeneous_tasks(jax.random.key(3))
    expected = jax.jit(jax.vmap(lr.adapt, in_axes=(None, 0)))(init_params(), tasks.support)

    def local(params, support):
        params = jax.tree.map(lambda x: jax.lax.pcast(x, "tasks", to="varying"), params)
        return jax.vmap(lr.adapt, in_axes=(None, 0))(params, support)

    spec = P("tasks")
    adapted = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), spec), out_specs=spec))(
        init_params(), tasks.support
    )
    assert_trees_close(adapted, expected)


@pytest.mark.standard_promotion  # optax.adam
def test_shard_map_adam_steps_equal_single_device_without_retracing(mesh):
    single_step = jmeta.meta_train_step(learner(), optax.adam(1e-2))
    step = jmeta.meta_train_step(learner(), optax.adam(1e-2), axis_name="tasks")
    counter = TraceCounter(step.update)
    mapped = parallel.shard_map_step(step._replace(update=counter), mesh)
    update, single = parallel.sharded_step(mapped, mesh), jax.jit(single_step.update)
    state, expected = step.init(init_params()), step.init(init_params())
    for i in range(3):
        tasks, key = heterogeneous_tasks(jax.random.key(10 + i)), jax.random.key(i)
        expected, expected_metrics = single(expected, tasks, key)
        state, metrics = update(state, tasks, key)
    assert counter.count == 1
    assert_trees_close(state, expected)
    assert_trees_close(metrics, expected_metrics)


def test_shard_map_chunked_scan_steps_equal_scan_steps(mesh):
    plain = jmeta.meta_train_step(learner(), optax.sgd(1e-2))
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2), axis_name="tasks", chunk_size=1)
    key = jax.random.key(5)
    expected, _ = jmeta.scan_steps(plain, sample_heterogeneous, 2)(plain.init(init_params()), key)
    run = parallel.sharded_scan_steps(
        parallel.shard_map_step(step, mesh), sample_heterogeneous, 2, mesh
    )
    state, metrics = run(step.init(init_params()), key)
    assert_trees_close(state, expected)
    assert metrics["loss"].shape == (2,)


def test_step_without_axis_name_is_rejected(mesh):
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2))
    with pytest.raises(ValueError, match="axis_name='tasks'"):
        parallel.sharded_step(parallel.shard_map_step(step, mesh), mesh)(
            step.init(init_params()), heterogeneous_tasks(jax.random.key(1)), jax.random.key(2)
        )


def test_not_divisible_names_both_numbers(mesh):
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2), axis_name="tasks")
    tasks = heterogeneous_tasks(jax.random.key(1), num_tasks=20)
    with pytest.raises(ValueError, match=r"20 tasks .* 8 devices"):
        parallel.shard_map_step(step, mesh).update(
            step.init(init_params()), tasks, jax.random.key(2)
        )
    assert jnp.ones(()).dtype == jnp.float32
