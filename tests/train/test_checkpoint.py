import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from toy import mlp_apply, mlp_init

import jmeta
from jmeta.train import Checkpoints


def a_state():
    learner = jmeta.meta_sgd(mlp_apply, jmeta.losses.mse, inner_lr=0.01)
    step = jmeta.meta_train_step(learner, optax.sgd(0.1, momentum=0.9))
    return step.init(learner.init(mlp_init(jax.random.key(0), sizes=(1, 8, 8, 1))))


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_save_restore_keep_last(tmp_path):
    state = a_state()
    with Checkpoints(tmp_path / "ckpt", keep=2) as ckpts:
        assert ckpts.latest() is None
        for step in (5, 10, 15):
            ckpts.save(step, state._replace(step=jnp.int32(step)))
        assert ckpts.steps() == [10, 15]
        restored = ckpts.restore(like=state)
        assert int(restored.step) == 15 and isinstance(restored, type(state))
        assert_same(restored.meta_params, state.meta_params)
        assert int(ckpts.restore(like=state, step=10).step) == 10
        with pytest.raises(
            FileNotFoundError, match=r"no checkpoint for step 5 .*found steps \[10, 15\]"
        ):
            ckpts.restore(like=state, step=5)
        abstract = jax.eval_shape(lambda: state)  # shapes and dtypes are enough
        assert_same(ckpts.restore(like=abstract), restored)


def test_restore_rejects_a_different_model(tmp_path):
    with Checkpoints(tmp_path / "ckpt") as ckpts:
        ckpts.save(1, {"w": np.zeros((3, 2), np.float32)})
        with pytest.raises(ValueError, match=r"does not match .*\[.w.\] has shape \(3, 2\)"):
            ckpts.restore(like={"w": np.zeros((4, 2), np.float32)})


def test_sharded_over_8_devices_restores_on_one_and_back(tmp_path):
    """Restore reads to host and then places: device counts may differ between save and restore."""
    assert jax.device_count() == 8
    mesh = Mesh(np.array(jax.devices()), ("data",))

    def spread(x):  # shard the leading axis where it divides, else replicate
        spec = PartitionSpec("data") if x.ndim and x.shape[0] % 8 == 0 else PartitionSpec()
        return jax.device_put(x, NamedSharding(mesh, spec))

    state = jax.tree.map(spread, a_state())
    kernel = state.meta_params.params["layer0"]["kernel"]
    assert len(kernel.sharding.device_set) == 8
    with Checkpoints(tmp_path / "ckpt") as ckpts:
        ckpts.save(7, state)
    with Checkpoints(tmp_path / "ckpt") as ckpts:
        one = ckpts.restore(like=a_state())
        assert all(len(x.sharding.device_set) == 1 for x in jax.tree.leaves(one))
        assert_same(one, state)
        replicated = NamedSharding(mesh, PartitionSpec())
        again = ckpts.restore(like=a_state(), sharding=replicated)
        assert all(len(x.sharding.device_set) == 8 for x in jax.tree.leaves(again))
        assert_same(again, state)
