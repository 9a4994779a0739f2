"""Tiny training configurations and a fake Omniglot release, shared by the trainer and CLI tests."""

from __future__ import annotations

from pathlib import Path

from dataset_fakes import make_omniglot_zip

from jmeta.datasets import MINIMAL_ALPHABETS
from jmeta.train import TrainConfig

#: A sinusoid run that compiles and trains in seconds.
TINY_SINUSOID = {
    "num_steps": 20,
    "steps_per_call": 5,
    "eval_interval": 10,
    "checkpoint_interval": 10,
    "meta_batch_size": 4,
    "width": 8,
    "val_tasks": 8,
    "eval_tasks": 16,
    "test_inner_steps": (1, 2),
    "devices": 1,  # fast on the tests' 8 simulated devices; test_devices.py uses more
}


def tiny_sinusoid(output_dir: Path, **changes) -> TrainConfig:
    return TrainConfig(output_dir=str(output_dir), **{**TINY_SINUSOID, **changes})


def fake_omniglot(root: Path, characters: int = 4, drawers: int = 4) -> Path:
    """Both minimal sets in the release layout, ``characters`` per alphabet (solid images).

    Written as extracted folders: a zip under a release name must be the
    release's file (its digest is checked), a folder is read as it is.
    """
    root.mkdir(parents=True, exist_ok=True)
    small1 = {a: characters for a in ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin")}
    small2 = {
        a: characters for a in ("Greek", "Japanese_(katakana)", "Latin", "Sanskrit", "Tagalog")
    }
    assert set(small1) | set(small2) == {a for part in MINIMAL_ALPHABETS.values() for a in part}
    make_omniglot_zip(root, "images_background_small1", small1, drawers=drawers, extract=True)
    make_omniglot_zip(
        root, "images_background_small2", small2, drawers=drawers, first_class=100, extract=True
    )
    return root


def tiny_omniglot(output_dir: Path, data_dir: Path, **changes) -> TrainConfig:
    """3-way 1-shot conv4 (4 filters, 16x16 images) on the fake release.

    Without batch norm: under the test suite's ``--xla_backend_optimization_level=0``
    (tests/conftest.py), XLA:CPU returns NaN meta-gradients for conv4 with batch
    norm, which it computes correctly at the default level. Runs with batch norm
    are tested in a subprocess with the default flags (test_real_omniglot.py).
    """
    options = {
        "batch_norm": "none",
        "dataset": "omniglot",
        "data_dir": str(data_dir),
        "image_size": 16,
        "ways": 3,
        "shots": 1,
        "queries": 2,
        "test_queries": 2,
        "meta_batch_size": 2,
        "devices": 1,
        "width": 4,
        "num_steps": 6,
        "steps_per_call": 3,
        "eval_interval": 3,
        "checkpoint_interval": 3,
        "val_tasks": 4,
        "eval_tasks": 6,
        "test_inner_steps": (1,),
    }
    return TrainConfig(output_dir=str(output_dir), **{**options, **changes})


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``jmeta argv`` in this process."""
    from jmeta.cli import main

    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err
