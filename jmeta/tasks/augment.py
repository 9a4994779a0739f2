"""Per-example image augmentation on device, for colour few-shot data.

Each function maps ``(key, images [n, H, W, C]) -> images`` of the same shape
and dtype, drawing independent randomness for every example, so it composes
with :func:`jmeta.tasks.few_shot` (``augment=crop_and_flip()``) and runs
inside the compiled meta-step. They work on uint8 as well as float images.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jmeta.tasks.episodic import Augment
from jmeta.types import Array, PRNGKey
from jmeta.validation import check_positive_int


def random_crop(key: PRNGKey, images: Array, padding: int = 4) -> Array:
    """Pad each image with ``padding`` zeros on every side, then crop back at a random offset.

    The standard CIFAR augmentation: each example is shifted by up to
    ``padding`` pixels in each direction, independently, filling with zeros.

    Args:
      key: a PRNG key.
      images: ``[n, H, W, C]``.
      padding: the largest shift, in pixels (0 returns ``images``).

    Returns:
      ``[n, H, W, C]``, same dtype.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> random_crop(jax.random.key(0), jnp.ones((8, 32, 32, 3), jnp.uint8)).shape
      (8, 32, 32, 3)
    """
    padding = check_positive_int("padding", padding, allow_zero=True)
    _check_images(images)
    if padding == 0:
        return images
    n, height, width, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(
            image, (offset[0], offset[1], 0), (height, width, image.shape[-1])
        )

    return jax.vmap(crop)(padded, offsets)


def random_flip(key: PRNGKey, images: Array) -> Array:
    """Mirror each image left-right with probability 1/2, independently.

    Args:
      key: a PRNG key.
      images: ``[n, H, W, C]``.

    Returns:
      ``[n, H, W, C]``, same dtype.
    """
    _check_images(images)
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1], images)


def crop_and_flip(padding: int = 4) -> Augment:
    """:func:`random_crop` then :func:`random_flip`, as one ``(key, images) -> images``.

    Example:
      >>> import functools, jmeta
      >>> sample = functools.partial(jmeta.tasks.few_shot, ways=5, shots=1, queries=15,
      ...                            augment=crop_and_flip(padding=4))
    """
    padding = check_positive_int("padding", padding, allow_zero=True)

    def augment(key: PRNGKey, images: Array) -> Array:
        crop_key, flip_key = jax.random.split(key)
        return random_flip(flip_key, random_crop(crop_key, images, padding))

    return augment


def _check_images(images: Array) -> None:
    if getattr(images, "ndim", None) != 4:
        raise ValueError(
            f"images must be [n, H, W, C]; got shape {getattr(images, 'shape', None)}."
        )
