import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta import losses


def test_cross_entropy_and_accuracy_values():
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = jnp.array([0, 1, 1])
    expected = -np.mean(np.log(jax.nn.softmax(np.asarray(logits))[np.arange(3), labels]))
    assert losses.cross_entropy(logits, labels) == pytest.approx(expected, rel=1e-6)
    assert losses.accuracy(logits, labels) == pytest.approx(2 / 3)


def test_bf16_logits_give_a_float32_loss():
    loss = losses.cross_entropy(jnp.zeros((2, 3), jnp.bfloat16), jnp.array([0, 2]))
    assert loss.dtype == jnp.float32


def test_mse_sums_output_dims_and_averages_examples():
    pred, y = jnp.array([[1.0, 2.0], [0.0, 0.0]]), jnp.zeros((2, 2))
    assert losses.mse(pred, y) == pytest.approx(2.5)


def test_labels_outside_the_classes_are_named():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*\[0, 5\]"):
        losses.cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 5]))
    with pytest.raises(ValueError, match=r"\[0, 3\).*\[-1, 0\]"):
        losses.accuracy(jnp.zeros((2, 3)), jnp.array([-1, 0]))


def test_shape_and_dtype_errors():
    with pytest.raises(ValueError, match="labels must be \\[n\\]"):
        losses.cross_entropy(jnp.zeros((2, 3)), jnp.zeros((3,), jnp.int32))
    with pytest.raises(TypeError, match="labels must be integer class indices"):
        losses.cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2,)))
    with pytest.raises(ValueError, match="logits must be \\[n, num_classes\\]"):
        losses.cross_entropy(jnp.zeros((2,)), jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match="mse: predictions have shape"):
        losses.mse(jnp.zeros((2, 1)), jnp.zeros((2,)))
