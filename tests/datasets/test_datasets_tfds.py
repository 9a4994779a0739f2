"""The tfds backend, on tfds' mock data (no TensorFlow, no files, no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jmeta.datasets import load, load_tfds
from jmeta.datasets.tfds import group_by_label

tfds = pytest.importorskip("tensorflow_datasets")


@pytest.fixture
def mock_tfds():
    with tfds.testing.mock_data(num_examples=60, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def _expected_groups(name, split):
    source = tfds.data_source(name, split=split, download=False)
    groups = {}
    for i in range(len(source)):
        ex = source[i]
        groups.setdefault(int(ex["label"]), []).append(ex["image"])
    return groups


def test_mnist_grouped_by_label(mock_tfds):
    expected = _expected_groups("mnist", "train")
    k = min(len(v) for v in expected.values())
    split = load_tfds("mnist", "train", examples_per_class=k)
    labels = sorted(expected)
    assert split.class_names == tuple(str(label) for label in labels)  # mnist names are "0".."9"
    assert split.images.shape == (len(labels), k, 28, 28, 1)
    for c, label in enumerate(labels):
        np.testing.assert_array_equal(split.images[c], np.stack(expected[label][:k]))


def test_unequal_classes_need_examples_per_class(mock_tfds):
    with pytest.raises(ValueError, match="different numbers of examples.*examples_per_class"):
        load("tfds:mnist", "train")


def test_omniglot_to_native_layout(mock_tfds):
    split = load("tfds:omniglot", "small1", image_size=28, channels=1, invert=True,
                 examples_per_class=1)  # fmt: skip
    assert split.images.shape[1:] == (1, 28, 28, 1)
    assert split.images.dtype == np.uint8


def test_reading_does_not_import_tensorflow():
    code = (
        "import sys, tensorflow_datasets as tfds\n"
        "from jmeta.datasets import load_tfds\n"
        "with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):\n"
        "    s = load_tfds('mnist', 'train', examples_per_class=1)\n"
        "assert s.images.shape[1:] == (1, 28, 28, 1), s.images.shape\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    import jmeta

    root = str(Path(jmeta.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)


def test_group_by_label_on_a_plain_list():
    source = [
        {"image": np.full((4, 4, 3), v, np.uint8), "label": label}
        for v, label in [(1, 2), (2, 0), (3, 2), (4, 0)]
    ]
    split = group_by_label(source, label_names=("zero", "one", "two"), channels=1, invert=True)
    assert split.class_names == ("zero", "two")
    assert list(split.images[:, :, 0, 0, 0].ravel()) == [253, 251, 254, 252]
    with pytest.raises(ValueError, match=r"features 'image' and 'label'.*\['img', 'label'\]"):
        group_by_label([{"img": 1, "label": 0}])


def test_missing_tfds_explains_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'jmeta\[tfds\]'"):
        load_tfds("mnist", "train")
