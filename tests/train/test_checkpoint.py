import errno
import os
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from toy import mlp_apply, mlp_init

import jmeta
from jmeta.train import Checkpoints
from jmeta.train.checkpoint import CheckpointDamaged, CheckpointMismatch, CheckpointWarning
from jmeta.train.lock import WriteError


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


def saved_pair(tmp_path):
    """Checkpoints 10 and 20 of a small state, and the state."""
    state = a_state()
    ckpts = Checkpoints(tmp_path / "ckpt")
    for step in (10, 20):
        ckpts.save(step, state._replace(step=jnp.int32(step)), made_by={"algorithm": "maml"})
    return ckpts, state


def files_of(ckpts, step):
    folder = ckpts.directory / str(step)
    return folder, sorted(p for p in folder.rglob("*") if p.is_file())


def test_every_flipped_bit_is_detected_and_the_newest_intact_checkpoint_used(tmp_path):
    ckpts, state = saved_pair(tmp_path)
    folder, files = files_of(ckpts, 20)
    rng = np.random.default_rng(0)
    for path in files:  # each file of the checkpoint, the manifest included
        original = path.read_bytes()
        data = bytearray(original)
        bit = int(rng.integers(8 * len(data)))
        data[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(data))
        name = path.relative_to(folder).as_posix()
        problem = ckpts.verify(20)
        assert problem is not None, name
        if name != "checkpoint.json":
            assert problem == f"1 file(s) differ from their checksums: {name}"
        fallback = r"checkpoint 20 in .* is damaged \(.*\); using checkpoint 10, the newest intact"
        with pytest.warns(CheckpointWarning, match=fallback):
            assert int(ckpts.restore(like=state).step) == 10
        named = r"checkpoint 20 in .* is damaged: .*Intact checkpoints: \[10\]"
        with pytest.raises(CheckpointDamaged, match=named):
            ckpts.restore(like=state, step=20)
        path.write_bytes(original)
        assert ckpts.verify(20) is None


def test_every_deleted_file_is_detected(tmp_path):
    ckpts, state = saved_pair(tmp_path)
    folder, files = files_of(ckpts, 20)
    for path in files:
        original = path.read_bytes()
        path.unlink()
        name = path.relative_to(folder).as_posix()
        expected = (
            "checkpoint.json is missing (an incomplete or foreign checkpoint)"
            if name == "checkpoint.json"
            else f"1 file(s) missing: {name}"
        )
        assert ckpts.verify(20) == expected
        with pytest.warns(CheckpointWarning, match="using checkpoint 10"):
            assert int(ckpts.restore(like=state).step) == 10
        path.write_bytes(original)
    for path in files_of(ckpts, 10)[1]:
        path.unlink()
    shutil.rmtree(folder / "state")
    none = (
        r"no intact checkpoint in .*: checkpoint 20 is damaged: \d+ file\(s\) missing: .*; "
        r"checkpoint 10 is damaged: checkpoint.json is missing"
    )
    with pytest.raises(CheckpointDamaged, match=none):
        ckpts.restore(like=state)


def test_a_checkpoint_says_what_made_it_and_a_mismatch_is_refused(tmp_path):
    ckpts, state = saved_pair(tmp_path)
    assert ckpts.made_by(20) == {"algorithm": "maml"}
    assert int(ckpts.restore(like=state, expect={"algorithm": "maml"}).step) == 20
    with pytest.raises(
        CheckpointMismatch,
        match=r"checkpoint 20 in .* was made by another configuration: algorithm='maml' there, "
        r"'fomaml' here\. It was copied from another run, or the run's config.json was edited\.",
    ):
        ckpts.restore(like=state, expect={"algorithm": "fomaml"})


def test_a_failed_save_leaves_the_earlier_checkpoints_and_no_debris(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    ckpts, state = saved_pair(tmp_path)

    def full(self, directory, *args, **kwargs):  # the disk fills up in the middle of a save
        (Path(directory).parent / "half-written").write_bytes(b"\0" * 10)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ocp.PyTreeCheckpointer, "save", full)
    with pytest.raises(
        WriteError,
        match=f"^cannot write checkpoint 30 in {ckpts.directory}: No space left on device$",
    ):
        ckpts.save(30, state)
    assert sorted(p.name for p in ckpts.directory.iterdir()) == ["10", "20"]
    assert ckpts.verify(10) is None and ckpts.verify(20) is None


def test_a_checkpoint_deleted_while_read_is_read_again(tmp_path, monkeypatch):
    """A reader of a live run: the writer's retention deletes the checkpoint being read."""
    import orbax.checkpoint as ocp

    ckpts, state = saved_pair(tmp_path)
    restore = ocp.PyTreeCheckpointer.restore

    def racing(self, directory, *args, **kwargs):
        monkeypatch.setattr(ocp.PyTreeCheckpointer, "restore", restore)
        ckpts.delete(int(Path(directory).parent.name))  # as a live run's retention would
        return restore(self, directory, *args, **kwargs)

    monkeypatch.setattr(ocp.PyTreeCheckpointer, "restore", racing)
    assert int(ckpts.restore(like=state).step) == 10
    monkeypatch.setattr(ocp.PyTreeCheckpointer, "restore", racing)
    with pytest.raises(
        FileNotFoundError, match=r"checkpoint 10 in .* was deleted while it was read"
    ):
        ckpts.restore(like=state, step=10)
