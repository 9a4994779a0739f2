"""docs/datasets.md states the tables the code holds: splits, digests, validation alphabets."""

from __future__ import annotations

import re
from pathlib import Path

from jmeta.datasets import DATASETS, MINIMAL_ALPHABETS, VINYALS_VAL_ALPHABETS, omniglot_files

DOC = (Path(__file__).resolve().parents[2] / "docs" / "datasets.md").read_text()


def _row(first_cell: str, contains: str = "") -> str:
    (line,) = [
        line
        for line in DOC.splitlines()
        if line.startswith(f"| {first_cell} |") and contains in line
    ]
    return line


def test_front_door_table_lists_every_split():
    for name in ("omniglot", "mini_imagenet", "cifar_fs", "fc100"):
        splits = re.findall(r"`([\w-]+)`", _row(f"`{name}`").split("|")[2])
        assert tuple(splits) == DATASETS[name], name


def test_known_digests_are_the_code_table():
    for stem, (algorithm, digest) in omniglot_files.KNOWN_DIGESTS.items():
        assert _row(f"`{stem}.zip`").endswith(f"| {algorithm} `{digest}` |"), stem


def test_vinyals_and_minimal_alphabets():
    assert ", ".join(VINYALS_VAL_ALPHABETS[:-1]) + " and " + VINYALS_VAL_ALPHABETS[-1] in " ".join(
        DOC.split()
    )
    for part, alphabets in MINIMAL_ALPHABETS.items():
        row = _row(f"`minimal-{part}`", contains="(")
        assert re.findall(r"([\w()]+) \(\d+\)", row) == list(alphabets), part
