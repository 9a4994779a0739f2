"""The pmap path computes what one device computes."""

import jax
import optax
import pytest
from parallel_helpers import (
    TraceCounter,
    assert_trees_close,
    heterogeneous_tasks,
    init_params,
    learner,
)

import jmeta
from jmeta import parallel


@pytest.mark.standard_promotion  # optax.adam
def test_pmap_adam_steps_equal_single_device_without_retracing():
    single_step = jmeta.meta_train_step(learner(), optax.adam(1e-2))
    step = jmeta.meta_train_step(learner(), optax.adam(1e-2), axis_name="tasks")
    counter = TraceCounter(step.update)
    update, single = parallel.pmap_step(step._replace(update=counter)), jax.jit(single_step.update)
    state = parallel.replicate_for_pmap(step.init(init_params()))
    expected = step.init(init_params())
    for i in range(3):
        tasks, key = heterogeneous_tasks(jax.random.key(10 + i)), jax.random.key(i)
        expected, expected_metrics = single(expected, tasks, key)
        state, metrics = update(state, tasks, key)
    assert counter.count == 1
    assert state.meta_params["head"]["kernel"].shape[0] == 8
    assert_trees_close(parallel.unreplicate(state), expected)
    assert_trees_close(parallel.unreplicate(metrics), expected_metrics)
    first = parallel.unreplicate(state)
    for copy in range(1, 8):  # every device holds the same state
        assert_trees_close(jax.tree.map(lambda x, c=copy: x[c], state), first, 0, 0)


def test_pmap_meta_batch_not_divisible_names_both_numbers():
    step = jmeta.meta_train_step(learner(), optax.sgd(1e-2), axis_name="tasks")
    update = parallel.pmap_step(step, jax.devices()[:4])
    state = parallel.replicate_for_pmap(step.init(init_params()), jax.devices()[:4])
    with pytest.raises(ValueError, match=r"18 tasks .* 4 devices"):
        update(state, heterogeneous_tasks(jax.random.key(1), num_tasks=18), jax.random.key(2))
