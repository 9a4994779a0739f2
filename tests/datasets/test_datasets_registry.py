"""The load() front door."""

from __future__ import annotations

import pytest
from dataset_fakes import make_omniglot_zip

import jmeta.datasets as datasets
from jmeta.datasets import DATASETS, load


def test_names_and_splits():
    assert set(DATASETS) == {"omniglot", "mini_imagenet", "cifar_fs", "fc100"}
    assert DATASETS["omniglot"] == (
        "background", "evaluation", "small1", "small2", "vinyals-train", "vinyals-train-noval",
        "vinyals-val", "vinyals-test", "minimal-train", "minimal-val", "minimal-test",
    )  # fmt: skip
    for name in datasets.__all__:
        assert hasattr(datasets, name)


def test_omniglot_defaults_to_28px(tmp_path):
    make_omniglot_zip(tmp_path, "images_background_small1", {"Aa": 1}, extract=True)
    assert load("omniglot", "small1", data_dir=tmp_path).images.shape == (1, 3, 28, 28, 1)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (("imagenet", "train"), {}, ValueError, r"unknown data set 'imagenet'.*tfds:<name>"),
        (("omniglot", "train"), {}, ValueError, r"unknown omniglot split 'train'.*minimal-train"),
        (("cifar_fs", "test"), {}, ValueError, "cifar_fs needs data_dir"),
        (
            ("fc100", "test"),
            {"download": True, "data_dir": "."},
            ValueError,
            "cannot be downloaded",
        ),
        (("mini_imagenet", "valid"), {}, ValueError, "unknown mini_imagenet split 'valid'"),
    ],
)
def test_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        load(*args, **kwargs)
