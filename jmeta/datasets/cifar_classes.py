"""Class lists of CIFAR-100 and of its few-shot splits CIFAR-FS and FC100.

``CIFAR100_SUPERCLASSES`` is CIFAR-100's own grouping of its 100 fine classes
into 20 superclasses (Krizhevsky, 2009), with the label names of the release's
``meta`` file.

CIFAR-FS (Bertinetto et al., 2019) splits the fine classes 64/16/20 at random;
FC100 (Oreshkin et al., 2018) splits the superclasses 12/4/4, so train, val
and test share no superclass. The lists below were written from our knowledge
of the split files distributed with those papers' code, then compared with
a public copy of those split files (the JSON assets of torchmeta): the three
CIFAR-FS lists and the FC100 train and test superclasses agree with it (no
FC100 val file was at hand; val is the complement). At import we check that
each split table partitions CIFAR-100.
"""

from __future__ import annotations

CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}

#: The 100 fine label names in label order (alphabetical, as in ``meta``).
CIFAR100_FINE = tuple(sorted(n for names in CIFAR100_SUPERCLASSES.values() for n in names))
#: The 20 superclass names in label order (alphabetical, as in ``meta``).
CIFAR100_COARSE = tuple(sorted(CIFAR100_SUPERCLASSES))

_CIFAR_FS_VAL = (
    "beaver", "butterfly", "camel", "cattle", "crab", "crocodile", "beetle", "flatfish",
    "lamp", "maple_tree", "motorcycle", "otter", "sea", "shark", "television", "tractor",
)  # fmt: skip
_CIFAR_FS_TEST = (
    "baby", "bed", "bicycle", "chimpanzee", "fox", "leopard", "man", "pickup_truck", "plain",
    "poppy", "rocket", "rose", "snail", "sweet_pepper", "table", "telephone", "wardrobe",
    "whale", "woman", "worm",
)  # fmt: skip

#: CIFAR-FS (Bertinetto et al., 2019): fine classes per split, sorted.
CIFAR_FS_CLASSES: dict[str, tuple[str, ...]] = {
    "train": tuple(sorted(set(CIFAR100_FINE) - set(_CIFAR_FS_VAL) - set(_CIFAR_FS_TEST))),
    "val": tuple(sorted(_CIFAR_FS_VAL)),
    "test": tuple(sorted(_CIFAR_FS_TEST)),
}

#: FC100 (Oreshkin et al., 2018): superclasses per split.
FC100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "train": (
        "fish", "flowers", "food_containers", "fruit_and_vegetables",
        "household_electrical_devices", "household_furniture", "large_man-made_outdoor_things",
        "large_natural_outdoor_scenes", "reptiles", "trees", "vehicles_1", "vehicles_2",
    ),
    "val": (
        "large_carnivores", "large_omnivores_and_herbivores", "non-insect_invertebrates",
        "small_mammals",
    ),
    "test": ("aquatic_mammals", "insects", "medium_mammals", "people"),
}  # fmt: skip

#: FC100 fine classes per split: each superclass's five, superclass by superclass.
FC100_CLASSES: dict[str, tuple[str, ...]] = {
    split: tuple(n for sc in supers for n in CIFAR100_SUPERCLASSES[sc])
    for split, supers in FC100_SUPERCLASSES.items()
}


def _check() -> None:
    assert len(CIFAR100_FINE) == len(set(CIFAR100_FINE)) == 100
    for table, sizes in ((CIFAR_FS_CLASSES, (64, 16, 20)), (FC100_CLASSES, (60, 20, 20))):
        assert tuple(len(table[s]) for s in ("train", "val", "test")) == sizes
        assert sorted(n for names in table.values() for n in names) == list(CIFAR100_FINE)
    assert sorted(s for sc in FC100_SUPERCLASSES.values() for s in sc) == list(CIFAR100_COARSE)


_check()
