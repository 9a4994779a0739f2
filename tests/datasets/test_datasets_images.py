"""Decoding and resizing helpers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from jmeta.datasets.images import decode_image, decode_images, resize_images


def _encoded(array, fmt="PNG"):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def test_decode_grey_and_rgb():
    rgb = np.zeros((6, 4, 3), np.uint8)
    rgb[..., 1] = 200
    data = _encoded(rgb)
    assert decode_image(data, channels=3).shape == (6, 4, 3)
    grey = decode_image(data, channels=1)
    assert grey.shape == (6, 4, 1) and grey[0, 0, 0] == round(200 * 0.587)
    assert decode_image(data, size=3, channels=1).shape == (3, 3, 1)


def test_box_filter_averages_area():
    image = np.zeros((4, 4), np.uint8)
    image[:2, :2] = 255  # one quarter inked
    out = decode_image(_encoded(image), size=2)
    assert out[0, 0, 0] == 255 and out[1, 1, 0] == 0
    assert decode_image(_encoded(image), size=1)[0, 0, 0] in (63, 64)


def test_jpeg_draft_downscale():
    big = np.full((400, 300, 3), 120, np.uint8)
    out = decode_image(_encoded(big, "JPEG"), size=84, channels=3)
    assert out.shape == (84, 84, 3)
    assert abs(int(out[40, 40, 0]) - 120) <= 2


def test_decode_error_names_the_image():
    with pytest.raises(ValueError, match="could not decode a/b.png"):
        decode_image(b"nope", name="a/b.png")


def test_resize_images_matches_decode():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 3, 12, 12, 1), dtype=np.uint8)
    out = resize_images(images, 5)
    assert out.shape == (2, 3, 5, 5, 1)
    np.testing.assert_array_equal(out[1, 2], decode_image(_encoded(images[1, 2, ..., 0]), size=5))
    assert resize_images(images, 12) is images


@pytest.mark.slow
def test_worker_processes_give_the_same_result():
    items = [(f"{i}.png", _encoded(np.full((8, 8), 10 * i, np.uint8))) for i in range(8)]
    serial = decode_images(items, size=4)
    pooled = decode_images(items, size=4, num_workers=2)
    np.testing.assert_array_equal(np.stack(serial), np.stack(pooled))
