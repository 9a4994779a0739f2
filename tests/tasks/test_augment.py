import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta.tasks.augment import crop_and_flip, random_crop, random_flip


def ramp_images(n=64, size=6, channels=3):
    """Distinct, non-zero images, so a crop's offset can be read off."""
    base = np.arange(1, size * size * channels + 1, dtype=np.uint8).reshape(size, size, channels)
    return jnp.asarray(np.broadcast_to(base, (n, size, size, channels)))


def test_random_crop_is_a_per_example_shift_with_zero_fill():
    images = ramp_images()
    out = np.asarray(jax.jit(random_crop, static_argnums=2)(jax.random.key(0), images, 2))
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
    offsets = set()
    for i, img in enumerate(out):
        found = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(padded[i, dy : dy + 6, dx : dx + 6], img)
        ]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 10  # independent offsets per example
    np.testing.assert_array_equal(random_crop(jax.random.key(0), images, 0), images)


def test_random_flip_flips_about_half_independently():
    images = ramp_images(n=200)
    out = np.asarray(jax.jit(random_flip)(jax.random.key(1), images))
    flipped = np.array([np.array_equal(o, np.asarray(images[0])[:, ::-1]) for o in out])
    kept = np.array([np.array_equal(o, np.asarray(images[0])) for o in out])
    assert np.all(flipped ^ kept) and 60 < flipped.sum() < 140


def test_crop_and_flip_is_deterministic_in_the_key_and_checks_shapes():
    augment = jax.jit(crop_and_flip(padding=1))
    images = ramp_images(n=8).astype(jnp.float32)
    np.testing.assert_array_equal(
        augment(jax.random.key(2), images), augment(jax.random.key(2), images)
    )
    assert augment(jax.random.key(2), images).dtype == jnp.float32
    with pytest.raises(ValueError, match=r"\[n, H, W, C\]"):
        random_flip(jax.random.key(0), images[0])
    with pytest.raises(ValueError, match="padding must be >= 0"):
        crop_and_flip(padding=-1)
