"""The trainer on several devices: the same run, to float rounding, on 1, 2 and 8 devices."""

import json

import jax
import numpy as np
import pytest
from tiny_runs import tiny_sinusoid

from jmeta.train import ConfigValueError, TrainConfig, train
from jmeta.train.devices import train_mesh

pytestmark = pytest.mark.standard_promotion  # the meta-optimizer is optax.adam

#: Float32 tolerance between device counts. Not bitwise: split over devices, the
#: mean over a meta-batch (and the meta-gradient's sum over tasks) is reduced in
#: another order (per-device partial sums, then an all-reduce), which rounds
#: differently; Adam then carries the difference through every later step. The
#: per-task computations themselves are the same. A wrong wiring (a device
#: training on its own tasks only, a sum instead of a mean) differs by far more.
RTOL, ATOL = 1e-4, 1e-6

SMALL = {
    "num_steps": 10,
    "steps_per_call": 5,
    "eval_interval": 5,
    "checkpoint_interval": 10,
    "meta_batch_size": 8,
    "val_tasks": 16,
    "eval_tasks": 16,
    "test_inner_steps": (1,),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("devices")
    out = {}
    for devices in (1, 2, 8):
        result = train(tiny_sinusoid(root / str(devices), devices=devices, **SMALL), progress=False)
        out[devices] = result
    return out


def test_one_two_and_eight_devices_give_the_same_run(runs):
    expected = json.loads((runs[1].output_dir / "results.json").read_text())
    for devices in (2, 8):
        result = runs[devices]
        leaf = jax.tree.leaves(result.state.meta_params)[0]
        assert len(leaf.sharding.device_set) == devices  # it really ran on that many
        got = json.loads((result.output_dir / "results.json").read_text())
        assert got["step"] == expected["step"] == 10
        for steps, scores in expected["test"].items():
            for name, value in scores.items():
                np.testing.assert_allclose(
                    got["test"][steps][name]["mean"], value["mean"], rtol=RTOL, atol=ATOL
                )
        for a, b in zip(jax.tree.leaves(result.state), jax.tree.leaves(runs[1].state), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)


def test_all_local_devices_by_default():
    assert train_mesh(TrainConfig(meta_batch_size=16)).size == jax.local_device_count() == 8
    assert train_mesh(TrainConfig(meta_batch_size=25, devices=5)).size == 5


def test_a_meta_batch_that_does_not_split_names_the_fields_and_the_sizes_that_work():
    with pytest.raises(ConfigValueError) as err:
        train_mesh(TrainConfig(meta_batch_size=25))
    assert str(err.value) == (
        "meta_batch_size (25) must split evenly over the 8 devices that run it (devices 8, all "
        "of them, by default): use a multiple of 8 tasks (e.g. 32), or devices 1 or 5."
    )
    assert err.value.fields == ("meta_batch_size", "devices")
    with pytest.raises(ConfigValueError, match=r"^devices 9 is more than the 8 cpu device"):
        train_mesh(TrainConfig(devices=9))


def test_a_checkpoint_resumes_on_another_device_count(runs, tmp_path):
    """Five steps on 2 devices, then resumed on 8: the 10-step run of 1 device, to rounding."""
    config = tiny_sinusoid(tmp_path / "run", devices=2, **{**SMALL, "num_steps": 5})
    train(config, progress=False)
    resumed = train(config.replace(num_steps=10, devices=8), resume=True, progress=False)
    assert int(resumed.state.step) == 10
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(runs[1].state), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)
