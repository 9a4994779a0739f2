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


def test_affine_warp_shifts_rotates_and_keeps_identity_exact():
    from jmeta.tasks.augment import affine_warp

    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, size=(3, 8, 8, 2)), jnp.uint8)
    eye = jnp.broadcast_to(jnp.eye(2), (3, 2, 2))
    np.testing.assert_array_equal(affine_warp(images, eye, jnp.zeros((3, 2))), images)
    # An integer shift (rows +1, columns -2) moves the content, edges repeated (np reference).
    out = np.asarray(affine_warp(images, eye, jnp.tile(jnp.array([1.0, -2.0]), (3, 1))))
    rows = np.clip(np.arange(8) - 1, 0, 7)
    cols = np.clip(np.arange(8) + 2, 0, 7)
    np.testing.assert_array_equal(out, np.asarray(images)[:, rows][:, :, cols])
    # A quarter turn about the centre: output (r, c) reads input M^-1 (r, c) = (c, -r) in
    # centred coordinates, which is np.rot90 (counter-clockwise).
    quarter = jnp.broadcast_to(jnp.array([[0.0, -1.0], [1.0, 0.0]]), (3, 2, 2))
    floats = images.astype(jnp.float32)
    turned = np.asarray(affine_warp(floats, quarter, jnp.zeros((3, 2))))
    np.testing.assert_allclose(turned, np.rot90(np.asarray(floats), k=1, axes=(1, 2)), atol=1e-4)


def test_random_affine_is_a_pure_function_of_the_key():
    from jmeta.tasks.augment import random_affine

    images = ramp_images(n=16, size=12, channels=1)
    augment = random_affine(max_shift=2.0, max_rotation=10.0, max_scale=0.1, max_shear=0.1)
    a = augment(jax.random.key(1), images)
    b = jax.jit(augment)(jax.random.key(1), images)
    c = augment(jax.random.key(2), images)
    assert a.shape == images.shape and a.dtype == images.dtype
    np.testing.assert_array_equal(a, b)  # same key, with or without jit: same images
    assert not np.array_equal(a, c) and not np.array_equal(a, images)
    per_example = {np.asarray(x).tobytes() for x in a}
    assert len(per_example) == 16  # each example draws its own transform
    none = random_affine(max_shift=0, max_rotation=0, max_scale=0, max_shear=0)
    np.testing.assert_array_equal(none(jax.random.key(3), images), images)
    with pytest.raises(ValueError, match="max_shift must be a number >= 0"):
        random_affine(max_shift=-1)
    with pytest.raises(ValueError, match="max_scale must be < 1"):
        random_affine(max_scale=1.0)
