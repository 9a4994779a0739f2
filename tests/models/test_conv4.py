"""Conv4: shapes, parameter names, input handling and mixed precision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta.models import Model, conv4

# Small enough to run fast on CPU; the real sizes are checked with eval_shape.
TINY = dict(channels=4, input_shape=(16, 16, 1))


def paths(params):
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(params)]


def shapes_of(model, batch_shape):
    params = jax.eval_shape(model.init, jax.random.key(0))
    logits = jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct(batch_shape, jnp.float32))
    return params, logits.shape


def test_omniglot_shapes():
    model = conv4(5)
    assert isinstance(model, Model)
    params, logits_shape = shapes_of(model, (7, 28, 28, 1))
    assert params["conv0"]["kernel"].shape == (3, 3, 1, 64)
    assert params["conv3"]["kernel"].shape == (3, 3, 64, 64)
    assert params["head"]["kernel"].shape == (64, 5)  # 28 -> 14 -> 7 -> 3 -> 1
    assert logits_shape == (7, 5)


def test_miniimagenet_shapes():
    params, logits_shape = shapes_of(conv4(5, channels=32, input_shape=(84, 84, 3)), (2, 84, 84, 3))
    assert params["head"]["kernel"].shape == (800, 5)  # 5 x 5 x 32
    assert logits_shape == (2, 5)


def test_param_names_and_head():
    model = conv4(3, **TINY)
    params = model.init(jax.random.key(0))
    assert sorted(params) == [
        "bn0",
        "bn1",
        "bn2",
        "bn3",
        "conv0",
        "conv1",
        "conv2",
        "conv3",
        "head",
    ]
    assert set(params["conv0"]) == {"kernel"}  # a bias is redundant before batch norm
    assert set(params["bn0"]) == {"scale", "bias"}
    assert [p for p in paths(params) if "head" in p] == [
        "['head']['bias']",
        "['head']['kernel']",
    ]
    assert model.apply(params, jnp.zeros((6, 16, 16, 1))).shape == (6, 3)


def test_no_batch_norm_has_conv_biases():
    model = conv4(3, batch_norm="none", **TINY)
    params = model.init(jax.random.key(0))
    assert not any(name.startswith("bn") for name in params)
    assert set(params["conv2"]) == {"kernel", "bias"}
    assert model.apply(params, jnp.zeros((6, 16, 16, 1))).shape == (6, 3)


def test_uint8_input_is_scaled_to_unit_interval():
    model = conv4(3, **TINY)
    params = model.init(jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    from_uint8 = model.apply(params, jnp.asarray(images))
    from_float = model.apply(params, jnp.asarray(images, jnp.float32) / 255.0)
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((16, 16, 1), r"rank 3"),
        ((4, 16, 16, 3), r"3 channels, the model expects 1"),
        ((4, 1, 16, 16), r"NHWC"),
        ((4, 32, 32, 1), r"got \(4, 32, 32, 1\)"),
    ],
)
def test_bad_input_shape(shape, message):
    model = conv4(3, **TINY)
    params = jax.eval_shape(model.init, jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected x of shape \[n, 16, 16, 1\].*" + message):
        model.apply(params, jnp.zeros(shape))


def test_bad_reference_shape():
    model = conv4(3, batch_norm="support", **TINY)
    params = jax.eval_shape(model.init, jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected reference of shape \[n, 16, 16, 1\]"):
        model.apply(params, jnp.zeros((2, 16, 16, 1)), reference=jnp.zeros((2, 16, 16, 3)))


def test_bad_options():
    with pytest.raises(ValueError, match="batch_norm must be one of"):
        conv4(5, batch_norm="running")
    with pytest.raises(ValueError, match="conv_impl must be one of"):
        conv4(5, conv_impl="fft")
    with pytest.raises(ValueError, match="at least 16"):
        conv4(5, input_shape=(8, 8, 1))


def test_mixed_precision_bf16_compute_float32_params():
    model = conv4(3, dtype=jnp.bfloat16, **TINY)
    params = model.init(jax.random.key(0))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(6, 16, 16, 1)), jnp.float32)

    logits = jax.jit(model.apply)(params, x)
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, conv4(3, **TINY).apply(params, x), rtol=0.05, atol=0.05)
    grads = jax.eval_shape(jax.grad(lambda p: jnp.sum(model.apply(p, x))), params)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))


def test_embedding_network_without_head():
    # num_classes=None: the features that feed the head, for the metric learners.
    with_head, embedding = conv4(5, **TINY), conv4(None, **TINY)
    params = with_head.init(jax.random.key(0))
    assert "head" not in embedding.init(jax.random.key(0))
    body = {k: v for k, v in params.items() if k != "head"}
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 16, 16, 1)), jnp.float32)
    features = embedding.apply(body, x)
    assert features.shape == (3, 4)  # 16 -> 1 after four poolings, 4 channels
    expected = features @ params["head"]["kernel"] + params["head"]["bias"]
    np.testing.assert_allclose(with_head.apply(params, x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_classes", [0, 2.5, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        conv4(num_classes, **TINY)
