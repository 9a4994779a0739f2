"""The Vinyals splits against the Prototypical Networks split files, on a release-shaped fake.

The split files (jakesnell/prototypical-networks, ``data/omniglot/splits/vinyals``)
list characters as ``<Alphabet>/characterNN/rotDDD``. Each list is recorded
below as its alphabets and character ranges (every list holds all four
rotations of each character, and consecutive characters of each alphabet).
The fake release has the real alphabets and character counts of the
background (30 alphabets) and evaluation (20) sets, one tiny drawing each.
"""

from __future__ import annotations

import numpy as np
import pytest
from dataset_fakes import make_omniglot_zip
from PIL import Image

from jmeta.datasets import (
    VINYALS_VAL_ALPHABETS,
    load,
    load_omniglot,
    omniglot_files,
    rotate_classes,
)

#: ProtoNets ``train.txt`` (1,028 characters).
PROTONETS_TRAIN = {
    "Alphabet_of_the_Magi": (1, 20), "Angelic": (1, 20), "Anglo-Saxon_Futhorc": (1, 29),
    "Arcadian": (1, 26), "Asomtavruli_(Georgian)": (1, 40), "Atemayar_Qelisayer": (1, 26),
    "Atlantean": (1, 26), "Aurek-Besh": (1, 26), "Avesta": (1, 26), "Balinese": (1, 24),
    "Blackfoot_(Canadian_Aboriginal_Syllabics)": (1, 14), "Braille": (1, 26),
    "Burmese_(Myanmar)": (1, 34), "Cyrillic": (1, 33), "Futurama": (1, 26), "Ge_ez": (1, 26),
    "Glagolitic": (1, 45), "Grantha": (1, 43), "Greek": (1, 24), "Gujarati": (1, 48),
    "Gurmukhi": (1, 41), "Inuktitut_(Canadian_Aboriginal_Syllabics)": (1, 16),
    "Japanese_(hiragana)": (1, 52), "Japanese_(katakana)": (1, 47), "Korean": (1, 40),
    "Latin": (1, 26), "Malay_(Jawi_-_Arabic)": (1, 40), "N_Ko": (1, 33),
    "Ojibwe_(Canadian_Aboriginal_Syllabics)": (1, 14), "Sanskrit": (1, 42),
    "Syriac_(Estrangelo)": (1, 23), "Tagalog": (1, 17), "Tifinagh": (1, 55),
}  # fmt: skip
#: ProtoNets ``val.txt`` (172 characters).
PROTONETS_VAL = {
    "Armenian": (1, 41), "Bengali": (1, 46), "Early_Aramaic": (1, 22), "Hebrew": (1, 22),
    "Mkhedruli_(Georgian)": (1, 41),
}  # fmt: skip
#: ProtoNets ``test.txt`` (423 characters).
PROTONETS_TEST = {
    "Gurmukhi": (42, 45), "Kannada": (1, 41), "Keble": (1, 26), "Malayalam": (1, 47),
    "Manipuri": (1, 40), "Mongolian": (1, 30), "Old_Church_Slavonic_(Cyrillic)": (1, 45),
    "Oriya": (1, 46), "Sylheti": (1, 28), "Syriac_(Serto)": (1, 23), "Tengwar": (1, 25),
    "Tibetan": (1, 42), "ULOG": (1, 26),
}  # fmt: skip
#: The 20 alphabets of ``images_evaluation.zip``; the other 30 are in ``images_background.zip``.
EVALUATION_ALPHABETS = {
    "Angelic", "Atemayar_Qelisayer", "Atlantean", "Aurek-Besh", "Avesta", "Ge_ez", "Glagolitic",
    "Gurmukhi", "Kannada", "Keble", "Malayalam", "Manipuri", "Mongolian",
    "Old_Church_Slavonic_(Cyrillic)", "Oriya", "Sylheti", "Syriac_(Serto)", "Tengwar",
    "Tibetan", "ULOG",
}  # fmt: skip


def _characters(table: dict[str, tuple[int, int]]) -> set[str]:
    return {f"{a}/character{c:02d}" for a, (lo, hi) in table.items() for c in range(lo, hi + 1)}


def _counts() -> dict[str, int]:
    """Characters per alphabet in the release (the lists together cover every character)."""
    counts: dict[str, int] = {}
    for table in (PROTONETS_TRAIN, PROTONETS_VAL, PROTONETS_TEST):
        for alphabet, (_, hi) in table.items():
            counts[alphabet] = max(counts.get(alphabet, 0), hi)
    return counts


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """The four Vinyals splits of a fake release with the real alphabets and counts.

    One drawer per character; the zips are not the release's files, so the
    digest check is off here.
    """
    root = tmp_path_factory.mktemp("release")
    counts = _counts()
    background = {a: n for a, n in counts.items() if a not in EVALUATION_ALPHABETS}
    evaluation = {a: n for a, n in counts.items() if a in EVALUATION_ALPHABETS}
    make_omniglot_zip(root, "images_background", background, drawers=1)
    make_omniglot_zip(root, "images_evaluation", evaluation, drawers=1)
    names = ("vinyals-train", "vinyals-train-noval", "vinyals-val", "vinyals-test")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(omniglot_files, "KNOWN_DIGESTS", {})
        return {
            n: load("omniglot", n, data_dir=root, image_size=None, cache_dir=root / "cache")
            for n in names
        }


def test_recorded_lists_cover_the_release():
    counts = _counts()
    assert len(counts) == 50 and len(EVALUATION_ALPHABETS) == 20
    assert sum(n for a, n in counts.items() if a not in EVALUATION_ALPHABETS) == 964
    assert sum(n for a, n in counts.items() if a in EVALUATION_ALPHABETS) == 659
    lists = [_characters(t) for t in (PROTONETS_TRAIN, PROTONETS_VAL, PROTONETS_TEST)]
    assert [len(s) for s in lists] == [1028, 172, 423]
    assert len(set().union(*lists)) == sum(len(s) for s in lists) == 1623


def test_splits_equal_the_protonets_lists(splits):
    expected = {
        "vinyals-train": _characters(PROTONETS_TRAIN) | _characters(PROTONETS_VAL),
        "vinyals-train-noval": _characters(PROTONETS_TRAIN),
        "vinyals-val": _characters(PROTONETS_VAL),
        "vinyals-test": _characters(PROTONETS_TEST),
    }
    for name, split in splits.items():
        assert set(split.class_names) == expected[name], name
        assert len(split.class_names) == len(expected[name])
    assert [s.num_classes for s in splits.values()] == [1200, 1028, 172, 423]


def test_sizes_alphabets_and_disjointness(splits):
    train, noval, val, test = (set(s.class_names) for s in splits.values())
    alphabets = {name: {c.split("/")[0] for c in s.class_names} for name, s in splits.items()}
    assert alphabets["vinyals-val"] == set(VINYALS_VAL_ALPHABETS) == {
        "Hebrew", "Mkhedruli_(Georgian)", "Armenian", "Early_Aramaic", "Bengali",
    }  # fmt: skip
    assert not alphabets["vinyals-val"] & alphabets["vinyals-train-noval"]  # whole alphabets
    assert noval | val == train and not noval & val
    assert not train & test
    assert len(train | test) == 1623
    # The one alphabet cut in two is Gurmukhi, between character41 and character42.
    assert alphabets["vinyals-train"] & alphabets["vinyals-test"] == {"Gurmukhi"}


def test_images_follow_their_class(splits):
    """A class keeps its own images in every split (class 0 of val is val's first name)."""
    train = splits["vinyals-train"]
    for name in ("vinyals-train-noval", "vinyals-val"):
        split = splits[name]
        for i in (0, split.num_classes - 1):
            j = train.class_names.index(split.class_names[i])
            np.testing.assert_array_equal(split.images[i], train.images[j])


def test_rotated_splits_equal_the_protonets_lists_with_rotations(splits):
    tables = {"vinyals-train-noval": PROTONETS_TRAIN, "vinyals-val": PROTONETS_VAL,
              "vinyals-test": PROTONETS_TEST}  # fmt: skip
    for name, table in tables.items():
        rotated = rotate_classes(splits[name])
        expected = {f"{c}/rot{r:03d}" for c in _characters(table) for r in (0, 90, 180, 270)}
        assert set(rotated.class_names) == expected
        assert rotated.num_classes == 4 * splits[name].num_classes
    assert rotate_classes(splits["vinyals-test"]).num_classes == 1692


def test_rotation_turns_the_way_the_protonets_loader_does():
    """ProtoNets rotates with Pillow's ``Image.rotate(deg)``; ``rotate_classes`` must agree."""
    image = np.arange(25, dtype=np.uint8).reshape(5, 5)
    split = rotate_classes(image[None, None, :, :, None])
    for r, degrees in enumerate((0, 90, 180, 270)):
        pil = np.asarray(Image.fromarray(image).rotate(degrees))
        np.testing.assert_array_equal(split[r, 0, :, :, 0], pil)


def test_val_split_needs_its_alphabets(tmp_path):
    make_omniglot_zip(tmp_path, "images_background", {"Hebrew": 2, "Latin": 2}, extract=True)
    make_omniglot_zip(tmp_path, "images_evaluation", {"ULOG": 2}, extract=True)
    for split in ("vinyals-val", "vinyals-train-noval"):
        with pytest.raises(
            ValueError,
            match=rf"the {split} split needs the validation alphabets \['Hebrew', "
            r"'Mkhedruli_\(Georgian\)', 'Armenian', 'Early_Aramaic', 'Bengali'\] among the "
            r"vinyals-train characters; missing \['Mkhedruli_\(Georgian\)', 'Armenian', "
            r"'Early_Aramaic', 'Bengali'\]",
        ):
            load_omniglot(split, tmp_path, image_size=None, cache_dir=tmp_path / "c",
                          vinyals_num_train=5)  # fmt: skip
