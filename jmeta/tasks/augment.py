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


def affine_warp(images: Array, matrices: Array, shifts: Array) -> Array:
    r"""Warp each image by its affine map about the image centre, bilinearly.

    Output pixel :math:`p` (row, column, relative to the centre) takes the
    input at :math:`M^{-1}(p - t)`, for the image's matrix :math:`M` and shift
    :math:`t` (pixels, ``[rows, columns]``); outside the image the nearest edge
    pixel is repeated (Omniglot's border is background).

    Args:
      images: ``[n, H, W, C]``, uint8 (rounded back) or float.
      matrices: ``[n, 2, 2]``.
      shifts: ``[n, 2]``.

    Returns:
      ``[n, H, W, C]``, same dtype.
    """
    _check_images(images)
    n, height, width, _ = images.shape
    centre = jnp.array([(height - 1) / 2, (width - 1) / 2], jnp.float32)
    rows, cols = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
    )
    grid = jnp.stack([rows.ravel(), cols.ravel()]) - centre[:, None]  # [2, H*W]

    def warp(image, matrix, shift):
        source = jnp.linalg.solve(matrix, grid - shift[:, None]) + centre[:, None]
        channels = [
            jax.scipy.ndimage.map_coordinates(
                image[..., c].astype(jnp.float32), [source[0], source[1]], order=1, mode="nearest"
            ).reshape(height, width)
            for c in range(image.shape[-1])
        ]
        return jnp.stack(channels, axis=-1)

    out = jax.vmap(warp)(images, matrices.astype(jnp.float32), shifts.astype(jnp.float32))
    if jnp.issubdtype(images.dtype, jnp.integer):
        info = jnp.iinfo(images.dtype)
        return jnp.clip(jnp.round(out), info.min, info.max).astype(images.dtype)
    return out.astype(images.dtype)


def random_affine(
    max_shift: float = 2.0,
    max_rotation: float = 10.0,
    max_scale: float = 0.1,
    max_shear: float = 0.1,
) -> Augment:
    r"""Small random affine transforms, one per example: a pure function of the key.

    Each example draws, uniformly and independently, a rotation
    :math:`\rho \in [-r, r]` degrees, a scale :math:`s \in [1 - \sigma, 1 + \sigma]`,
    a shear :math:`h \in [-\eta, \eta]` and a shift :math:`t \in [-m, m]^2` pixels,
    and is warped by :math:`M = R(\rho) \begin{pmatrix} s & h \\ 0 & s \end{pmatrix}`
    and :math:`t` about its centre (:func:`affine_warp`). The common augmentation of
    Omniglot few-shot work besides rotations by multiples of 90 degrees.

    Args:
      max_shift: :math:`m`, pixels.
      max_rotation: :math:`r`, degrees.
      max_scale: :math:`\sigma`.
      max_shear: :math:`\eta`.

    Returns:
      ``(key, images [n, H, W, C]) -> images``, same shape and dtype.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> augment = random_affine(max_shift=2.0)
      >>> augment(jax.random.key(0), jnp.zeros((4, 28, 28, 1), jnp.uint8)).shape
      (4, 28, 28, 1)
    """
    for name, value in (("max_shift", max_shift), ("max_rotation", max_rotation),
                        ("max_scale", max_scale), ("max_shear", max_shear)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0; got {value!r}.")
    if max_scale >= 1:
        raise ValueError(f"max_scale must be < 1 (a scale of 1 - max_scale > 0); got {max_scale}.")

    def augment(key: PRNGKey, images: Array) -> Array:
        _check_images(images)
        n = images.shape[0]
        k_rot, k_scale, k_shear, k_shift = jax.random.split(key, 4)
        angle = jnp.deg2rad(jax.random.uniform(k_rot, (n,), minval=-1.0) * max_rotation)
        scale = 1.0 + jax.random.uniform(k_scale, (n,), minval=-1.0) * max_scale
        shear = jax.random.uniform(k_shear, (n,), minval=-1.0) * max_shear
        shift = jax.random.uniform(k_shift, (n, 2), minval=-1.0) * max_shift
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        rotation = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)
        zero = jnp.zeros_like(scale)
        shape = jnp.stack([jnp.stack([scale, shear], -1), jnp.stack([zero, scale], -1)], -2)
        return affine_warp(images, rotation @ shape, shift)

    return augment
