"""CIFAR-FS and FC100 from CIFAR-100 python pickles made by the test."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_fakes import cifar100_arrays, write_cifar100

from jmeta.datasets import CIFAR_FS_CLASSES, FC100_CLASSES, FC100_SUPERCLASSES, load
from jmeta.datasets.cifar import load_cifar_fs, load_fc100, read_cifar100
from jmeta.datasets.cifar_classes import CIFAR100_FINE, CIFAR100_SUPERCLASSES


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    return write_cifar100(tmp_path_factory.mktemp("cifar"), cifar100_arrays())


def test_split_tables():
    assert [len(CIFAR_FS_CLASSES[s]) for s in ("train", "val", "test")] == [64, 16, 20]
    assert [len(FC100_CLASSES[s]) for s in ("train", "val", "test")] == [60, 20, 20]
    assert [len(FC100_SUPERCLASSES[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    assert CIFAR_FS_CLASSES["test"][:3] == ("baby", "bed", "bicycle")
    assert FC100_SUPERCLASSES["test"] == ("aquatic_mammals", "insects", "medium_mammals", "people")
    for table in (CIFAR_FS_CLASSES, FC100_CLASSES):
        assert sorted(sum(table.values(), ())) == list(CIFAR100_FINE)


@pytest.mark.parametrize(
    "loader, table", [(load_cifar_fs, CIFAR_FS_CLASSES), (load_fc100, FC100_CLASSES)]
)
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_splits_gather_the_right_rows(cifar_dir, loader, table, split):
    out = loader(split, cifar_dir)
    assert out.class_names == table[split]
    assert out.images.shape == (len(table[split]), 4, 32, 32, 3)
    labels = [CIFAR100_FINE.index(c) for c in out.class_names]
    np.testing.assert_array_equal(out.images[:, :, 0, 0, 0], np.repeat([labels], 4, 0).T)
    # Three train rows, then the test row, in file order.
    np.testing.assert_array_equal(out.images[0, :, 0, 0, 2], [0, 0, 0, 1])
    rows = [labels[0], labels[0] + 100, labels[0] + 200, labels[0]]
    np.testing.assert_array_equal(out.images[0, :, 0, 0, 1], np.array(rows) % 256)


def test_channel_order_is_hwc(cifar_dir):
    data = read_cifar100(cifar_dir)
    assert data.images.shape == (400, 32, 32, 3)
    assert data.images[5, 0, 0, 0] == 5 and data.images[5, 1, 0, 0] == 0


def test_fc100_test_is_whole_superclasses(cifar_dir):
    out = load("fc100", "test", data_dir=cifar_dir)
    assert out.class_names[:5] == CIFAR100_SUPERCLASSES["aquatic_mammals"]


def test_archive_and_folder_paths(tmp_path, cifar_dir):
    write_cifar100(tmp_path, cifar100_arrays(), archive=True)
    a = load("cifar_fs", "val", data_dir=tmp_path, image_size=16)
    b = load_cifar_fs("val", cifar_dir / "cifar-100-python", image_size=16)
    assert a.images.shape == (16, 4, 16, 16, 3)
    np.testing.assert_array_equal(a.images, b.images)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"expected CIFAR-100 .*found \[\]"):
        load_cifar_fs("train", tmp_path)
    files = cifar100_arrays()
    del files["test"]
    write_cifar100(tmp_path, files)
    with pytest.raises(FileNotFoundError, match="expected the file test"):
        load_cifar_fs("train", tmp_path)


def test_wrong_layouts(tmp_path):
    files = cifar100_arrays()
    files["train"][b"data"] = files["train"][b"data"].reshape(-1, 3, 32, 32)
    write_cifar100(tmp_path / "a", files)
    with pytest.raises(ValueError, match=r"uint8 \[N, 3072\] in train"):
        load_fc100("train", tmp_path / "a")
    files = cifar100_arrays()
    del files["test"][b"coarse_labels"]
    write_cifar100(tmp_path / "b", files)
    with pytest.raises(ValueError, match=r"missing \['coarse_labels'\]"):
        load_fc100("train", tmp_path / "b")
    files = cifar100_arrays()
    files["train"][b"coarse_labels"] = [0] * 300
    write_cifar100(tmp_path / "c", files)
    with pytest.raises(ValueError, match="should belong to superclass"):
        load_fc100("train", tmp_path / "c")
    (tmp_path / "d" / "cifar-100-python").mkdir(parents=True)
    (tmp_path / "d" / "cifar-100-python" / "meta").write_bytes(b"nonsense")
    with pytest.raises(ValueError, match="could not unpickle meta"):
        load_fc100("train", tmp_path / "d")


def test_unknown_split(cifar_dir):
    with pytest.raises(
        ValueError, match=r"unknown CIFAR-FS split 'valid'.*\['train', 'val', 'test'\]"
    ):
        load_cifar_fs("valid", cifar_dir)
