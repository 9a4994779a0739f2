"""ResNet-12: shapes, parameter names, residual structure (tiny sizes)."""

import jax
import jax.numpy as jnp
import pytest

from jmeta.models import resnet12

CHANNELS = (2, 3, 4, 4)


def test_shapes_and_names():
    model = resnet12(3, channels=CHANNELS, input_shape=(16, 16, 1))
    params = model.init(jax.random.key(0))
    assert sorted(params) == ["block0", "block1", "block2", "block3", "head"]
    assert sorted(params["block1"]) == [
        "bn0",
        "bn1",
        "bn2",
        "conv0",
        "conv1",
        "conv2",
        "shortcut_bn",
        "shortcut_conv",
    ]
    assert params["block1"]["conv0"]["kernel"].shape == (3, 3, 2, 3)
    assert params["block1"]["conv1"]["kernel"].shape == (3, 3, 3, 3)
    assert params["block1"]["shortcut_conv"]["kernel"].shape == (1, 1, 2, 3)
    assert params["head"]["kernel"].shape == (4, 3)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    assert [p for p in paths if "head" in p] == [
        "['head']['bias']",
        "['head']['kernel']",
    ]
    assert model.apply(params, jnp.zeros((6, 16, 16, 1))).shape == (6, 3)


def test_default_widths_on_miniimagenet():
    model = resnet12(5)
    params = jax.eval_shape(model.init, jax.random.key(0))
    assert params["block0"]["conv0"]["kernel"].shape == (3, 3, 3, 64)
    assert params["block3"]["conv2"]["kernel"].shape == (3, 3, 640, 640)
    assert params["head"]["kernel"].shape == (640, 5)
    x = jax.ShapeDtypeStruct((2, 84, 84, 3), jnp.float32)
    assert jax.eval_shape(model.apply, params, x).shape == (2, 5)


def test_no_batch_norm_and_uint8():
    model = resnet12(3, channels=CHANNELS, input_shape=(16, 16, 1), batch_norm="none")
    params = model.init(jax.random.key(0))
    assert "bn0" not in params["block0"]
    assert set(params["block0"]["shortcut_conv"]) == {"kernel", "bias"}
    x = jnp.full((6, 16, 16, 1), 255, jnp.uint8)
    assert jnp.allclose(model.apply(params, x), model.apply(params, jnp.ones((6, 16, 16, 1))))


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 16"):
        resnet12(5, channels=CHANNELS, input_shape=(8, 8, 3))
    with pytest.raises(ValueError, match="at least one block"):
        resnet12(5, channels=())
    model = resnet12(3, channels=CHANNELS, input_shape=(16, 16, 1))
    params = jax.eval_shape(model.init, jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected x of shape \[n, 16, 16, 1\]"):
        model.apply(params, jnp.zeros((2, 16, 16, 3)))


def test_embedding_network_without_head():
    model = resnet12(None, channels=CHANNELS, input_shape=(16, 16, 1))
    params = model.init(jax.random.key(0))
    assert "head" not in params
    assert model.apply(params, jnp.zeros((6, 16, 16, 1))).shape == (6, 4)
    with pytest.raises(ValueError, match="num_classes"):
        resnet12(-1, channels=CHANNELS)
