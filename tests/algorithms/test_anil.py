import jax
import numpy as np
import pytest
from toy import mlp_apply, mlp_init

import jmeta


@pytest.mark.parametrize(
    "builder, changes", [(jmeta.anil, {"head"}), (jmeta.boil, {"layer0", "layer1"})]
)
def test_only_the_selected_part_adapts(builder, changes):
    params = mlp_init(jax.random.key(0))
    task = jmeta.tasks.sinusoid(jax.random.key(1))
    learner = builder(mlp_apply, jmeta.losses.mse, inner_lr=0.1, num_steps=2)
    adapted = learner.adapt(learner.init(params), task.support)
    for name in params:
        moved = not np.array_equal(adapted[name]["kernel"], params[name]["kernel"])
        assert moved == (name in changes), name


def test_unknown_head_name_is_a_clear_error():
    learner = jmeta.anil(mlp_apply, jmeta.losses.mse, inner_lr=0.1, head="classifier")
    task = jmeta.tasks.sinusoid(jax.random.key(1))
    with pytest.raises(ValueError, match="selects no parameter"):
        learner.meta_loss(mlp_init(jax.random.key(0)), task)


def test_body_still_gets_a_meta_gradient():
    params = mlp_init(jax.random.key(0))
    task = jmeta.tasks.sinusoid(jax.random.key(1))
    learner = jmeta.anil(mlp_apply, jmeta.losses.mse, inner_lr=0.1)
    grads = jax.grad(lambda p: learner.meta_loss(p, task)[0])(params)
    assert np.abs(grads["layer0"]["kernel"]).sum() > 0
