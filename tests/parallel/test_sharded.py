"""jit + NamedSharding over 8 simulated devices equals one device."""

import jax
import jax.numpy as jnp
import optax
import pytest
from jax.sharding import PartitionSpec
from parallel_helpers import (
    NUM_TASKS,
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
    assert len(jax.devices()) == 8, "tests/conftest.py sets 8 simulated CPU devices"
    return parallel.task_mesh()


def test_sharded_meta_gradient_equals_single_device(mesh):
    lr = learner()
    tasks, key = heterogeneous_tasks(jax.random.key(1)), jax.random.key(2)
    grad = jax.jit(lambda p, t, k: jmeta.meta_gradient(lr, p, t, k))
    expected = grad(init_params(), tasks, key)
    sharded_tasks = parallel.shard_tasks(tasks, mesh)
    assert sharded_tasks.support.x.sharding.spec == PartitionSpec("tasks")
    assert len(sharded_tasks.support.x.addressable_shards) == 8
    actual = grad(parallel.replicate(init_params(), mesh), sharded_tasks, key)
    assert_trees_close(actual, expected)


@pytest.mark.standard_promotion  # optax.adam
def test_sharded_adam_steps_equal_single_device_without_retracing(mesh):
    step = jmeta.meta_train_step(learner(), optax.adam(1e-2))
    counter = TraceCounter(step.update)
    sharded = parallel.sharded_step(step._replace(update=counter), mesh)
    single = jax.jit(step.update)
    params = init_params()
    state, expected = step.init(params), step.init(init_params())
    for i in range(3):
        tasks, key = heterogeneous_tasks(jax.random.key(10 + i)), jax.random.key(i)
        expected, expected_metrics = single(expected, tasks, key)
        state, metrics = sharded(state, tasks, key)
    assert counter.count == 1
    assert_trees_close(state, expected)
    assert_trees_close(metrics, expected_metrics)
    leaf = state.meta_params["head"]["kernel"]
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 8
    # The step donates its state, but the caller's arrays were copied onto the mesh.
    assert not any(p.is_deleted() for p in jax.tree.leaves(params))


def test_sharded_scan_steps_equal_scan_steps(mesh):
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2))
    key = jax.random.key(5)
    expected, expected_metrics = jmeta.scan_steps(step, sample_heterogeneous, 3)(
        step.init(init_params()), key
    )
    run = parallel.sharded_scan_steps(step, sample_heterogeneous, 3, mesh)
    state, metrics = run(step.init(init_params()), key)
    assert_trees_close(state, expected)
    assert_trees_close(metrics, expected_metrics)


def test_sharded_chunked_step_equals_single_device(mesh):
    plain = jmeta.meta_train_step(learner(), optax.sgd(1e-2))
    chunked = jmeta.meta_train_step(learner(), optax.sgd(1e-2), chunk_size=8)
    tasks, key = heterogeneous_tasks(jax.random.key(1)), jax.random.key(2)
    expected, _ = jax.jit(plain.update)(plain.init(init_params()), tasks, key)
    state, _ = parallel.sharded_step(chunked, mesh)(chunked.init(init_params()), tasks, key)
    assert_trees_close(state, expected)


def test_meta_batch_not_divisible_by_devices_names_both_numbers(mesh):
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2))
    tasks = heterogeneous_tasks(jax.random.key(1), num_tasks=12)
    with pytest.raises(ValueError, match=r"12 tasks .* 8 devices"):
        parallel.shard_tasks(tasks, mesh)
    with pytest.raises(ValueError, match=r"12 tasks .* 8 devices"):
        parallel.sharded_step(step, mesh)(step.init(init_params()), tasks, jax.random.key(0))
    assert NUM_TASKS % 8 == 0


def test_sharded_scan_steps_take_the_data_as_an_argument(mesh):
    """The sampler's data is an argument of the compiled call: new data, no retrace."""
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2))

    def sample(key, scale):  # a (key, data) -> Task sampler reading its data
        tasks = sample_heterogeneous(key)
        return tasks._replace(query=tasks.query._replace(y=tasks.query.y * scale))

    counter = TraceCounter(sample)
    run = parallel.sharded_scan_steps(step, counter, 2, mesh)
    single = jmeta.scan_steps(step, sample, 2)
    key, kernels = jax.random.key(5), []
    for scale in (1.0, 3.0):
        data = parallel.replicate(jnp.float32(scale), mesh)
        state, _ = run(step.init(init_params()), key, data)
        expected, _ = single(step.init(init_params()), key, jnp.float32(scale))
        assert_trees_close(state, expected)
        kernels.append(state.meta_params["head"]["kernel"])
    assert counter.count == 1  # one trace: the data is not a constant of the program
    assert not jnp.allclose(kernels[0], kernels[1])  # and it is read
