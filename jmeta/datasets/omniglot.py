"""Omniglot: 1623 hand-drawn characters from 50 alphabets, 20 drawings each.

Splits (``load_omniglot(split)``):

* ``"background"`` (30 alphabets, 964 characters) and ``"evaluation"``
  (20 alphabets, 659 characters): the release's own split (Lake et al., 2015).
* ``"small1"`` and ``"small2"``: the release's minimal background sets
  (5 alphabets each; 136 and 156 characters).
* ``"vinyals-train"`` (1,200 characters) / ``"vinyals-test"`` (423): the
  character split of Vinyals et al. (2016) as the Prototypical Networks code
  ships it (``data/omniglot/splits/vinyals/trainval.txt`` and ``test.txt`` of
  jakesnell/prototypical-networks). Background then evaluation characters,
  each in sorted order, are pooled; the first 1,200 train and the other 423
  test, so the cut falls inside the evaluation alphabet Gurmukhi
  (``character41`` trains, ``character42`` tests). These are the same
  characters as those two files, in jmeta's sorted order.
* ``"vinyals-val"`` (172) / ``"vinyals-train-noval"`` (1,028): the same
  files' ``val.txt`` and ``train.txt``, which divide ``"vinyals-train"``: the
  whole alphabets ``VINYALS_VAL_ALPHABETS`` (Hebrew, Mkhedruli_(Georgian),
  Armenian, Early_Aramaic, Bengali) validate, the rest trains. Prototypical
  Networks trains on ``train.txt`` with ``val.txt`` to pick the number of
  epochs, then retrains on ``trainval.txt`` and tests on ``test.txt``.

  MAML's code (cbfinn/maml, ``data_generator.py``) does not use these files:
  it lists the 1,623 character folders in file-system order, shuffles them with
  ``random.seed(1)`` and takes 1,100 for meta-training, 100 for validation and
  the other 423 for testing, so its characters differ from these (and depend
  on the listing order). jmeta does not reproduce that split.

  Rotations: the split files list every character at 0, 90, 180 and 270
  degrees as four classes (4,800 / 4,112 / 688 / 1,692 classes). Here rotation
  is separate: ``rotate_classes`` gives exactly those classes, with the files'
  names, and the trainer's ``rotations`` (training) and ``eval_rotations``
  (validation and test) options sample from them on the device. MAML's code
  instead rotates each character of a task by a random multiple of 90 degrees
  (in training and testing), so one task never holds two rotations of one
  character.
* ``"minimal-train"`` / ``"minimal-val"`` / ``"minimal-test"``: a fixed
  alphabet split of the two minimal zips together (8 distinct alphabets, 242
  distinct characters; Greek and Latin, present in both zips with identical
  images, count once). See ``MINIMAL_ALPHABETS``:

  ========  =====================================================  ==========
  split     alphabets (characters)                                 characters
  ========  =====================================================  ==========
  train     Balinese (24), Greek (24), Japanese_(katakana) (47),   161
            Korean (40), Latin (26)
  val       Early_Aramaic (22)                                     22
  test      Sanskrit (42), Tagalog (17)                            59
  ========  =====================================================  ==========

  Every held-out split has at least 20 characters, enough for 20-way tasks.

References:
  Lake, Salakhutdinov and Tenenbaum, "Human-level concept learning through
  probabilistic program induction", Science 2015.
  Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.
  Snell, Swersky and Zemel, "Prototypical Networks for Few-shot Learning",
  NeurIPS 2017.
  Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation
  of Deep Networks", ICML 2017.
"""

from __future__ import annotations

import os
from typing import overload

import numpy as np

from jmeta.datasets.base import FewShotSplit, check_split, concat_splits, select_classes
from jmeta.datasets.omniglot_files import STEMS, load_source

VINYALS_NUM_TRAIN = 1200

#: The alphabets of ``"vinyals-val"``: the Prototypical Networks ``val.txt``
#: holds exactly these, every character of each (172 characters).
VINYALS_VAL_ALPHABETS: tuple[str, ...] = (
    "Hebrew",
    "Mkhedruli_(Georgian)",
    "Armenian",
    "Early_Aramaic",
    "Bengali",
)

#: The fixed alphabet split of the minimal (small1 + small2) data.
MINIMAL_ALPHABETS: dict[str, tuple[str, ...]] = {
    "train": ("Balinese", "Greek", "Japanese_(katakana)", "Korean", "Latin"),
    "val": ("Early_Aramaic",),
    "test": ("Sanskrit", "Tagalog"),
}

SPLITS: tuple[str, ...] = (
    *STEMS,
    "vinyals-train",
    "vinyals-train-noval",
    "vinyals-val",
    "vinyals-test",
    *(f"minimal-{s}" for s in MINIMAL_ALPHABETS),
)


def load_omniglot(
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    image_size: int | None = 28,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    vinyals_num_train: int = VINYALS_NUM_TRAIN,
    num_workers: int = 0,
) -> FewShotSplit:
    """Loads an Omniglot split as ``[characters, 20, S, S, 1]`` uint8, ink high.

    Args:
      split: one of ``SPLITS`` (see the module docstring).
      data_dir: folder with the release zips (or their extracted folders);
        default ``$JMETA_OMNIGLOT_DIR``, else ``<cache root>/omniglot``.
      image_size: side ``S`` of the resized images (default 28, as in MAML
        and Prototypical Networks); ``None`` keeps 105.
      cache_dir: cache folder for decoded arrays (see ``jmeta.datasets.cache``).
      download: fetch missing release zips from the public release first.
      vinyals_num_train: characters in ``"vinyals-train"`` (1200 in the paper);
        ``"vinyals-val"`` and ``"vinyals-train-noval"`` divide those.
      num_workers: decode PNGs in this many spawned processes (0: in this one).

    Returns:
      A ``FewShotSplit`` with class names ``"<Alphabet>/characterNN"``;
      ``images`` are 0 on background and up to 255 on ink.

    Raises:
      ValueError: unknown split, unreadable or unexpected files.
      FileNotFoundError: the release files are not in ``data_dir``.

    Example:
      >>> train = load_omniglot("minimal-train")  # doctest: +SKIP
      >>> train.images.shape  # doctest: +SKIP
      (161, 20, 28, 28, 1)
    """
    if split not in SPLITS:
        raise ValueError(f"unknown Omniglot split {split!r}; expected one of {list(SPLITS)}")

    def source(name: str) -> FewShotSplit:
        return load_source(
            name,
            data_dir=data_dir,
            image_size=image_size,
            cache_dir=cache_dir,
            download=download,
            num_workers=num_workers,
        )

    if split in STEMS:
        return source(split)
    if split.startswith("vinyals-"):
        pooled = concat_splits(source("background"), source("evaluation"))
        n = int(vinyals_num_train)
        if not 0 < n < pooled.num_classes:
            raise ValueError(
                f"vinyals_num_train must be in 1..{pooled.num_classes - 1} for "
                f"{pooled.num_classes} pooled characters; got {vinyals_num_train}"
            )
        if split == "vinyals-test":
            return FewShotSplit(pooled.images[n:], pooled.class_names[n:])
        train = FewShotSplit(pooled.images[:n], pooled.class_names[:n])
        return train if split == "vinyals-train" else vinyals_val_split(train, split)
    pooled = minimal_pool(source("small1"), source("small2"))
    return minimal_split(pooled, split.removeprefix("minimal-"))


def minimal_pool(*sources: FewShotSplit) -> FewShotSplit:
    """Pools splits, keeping the first occurrence of each class name.

    Used for ``small1`` + ``small2``, whose Greek and Latin characters are the
    same in both zips.
    """
    seen: dict[str, tuple[int, int]] = {}
    for s_index, split in enumerate(sources):
        for c_index, name in enumerate(split.class_names):
            seen.setdefault(name, (s_index, c_index))
    images = np.stack([sources[s].images[c] for s, c in seen.values()])
    return check_split(FewShotSplit(images, tuple(seen)))


def minimal_split(pooled: FewShotSplit, part: str) -> FewShotSplit:
    """The ``part`` (train/val/test) alphabets of ``MINIMAL_ALPHABETS``.

    Raises:
      ValueError: ``pooled`` lacks one of the part's alphabets.
    """
    alphabets = MINIMAL_ALPHABETS[part]
    by_alphabet: dict[str, list[str]] = {}
    for name in pooled.class_names:
        by_alphabet.setdefault(name.split("/", 1)[0], []).append(name)
    missing = [a for a in alphabets if a not in by_alphabet]
    if missing:
        raise ValueError(
            f"the minimal {part} split needs alphabets {list(alphabets)}; missing {missing} "
            f"(found {sorted(by_alphabet)})"
        )
    return select_classes(pooled, [n for a in alphabets for n in by_alphabet[a]])


def vinyals_val_split(train: FewShotSplit, split: str) -> FewShotSplit:
    """``"vinyals-val"`` (the ``VINYALS_VAL_ALPHABETS`` classes of ``train``)
    or ``"vinyals-train-noval"`` (the others), in ``train``'s order.

    Raises:
      ValueError: ``train`` lacks one of the validation alphabets.
    """
    alphabets = {name.split("/", 1)[0] for name in train.class_names}
    missing = [a for a in VINYALS_VAL_ALPHABETS if a not in alphabets]
    if missing:
        raise ValueError(
            f"the {split} split needs the validation alphabets {list(VINYALS_VAL_ALPHABETS)} "
            f"among the vinyals-train characters; missing {missing}"
        )
    want_val = split == "vinyals-val"
    keep = [
        n for n in train.class_names if (n.split("/", 1)[0] in VINYALS_VAL_ALPHABETS) == want_val
    ]
    return select_classes(train, keep)


@overload
def rotate_classes(split: FewShotSplit) -> FewShotSplit: ...
@overload
def rotate_classes(split: np.ndarray) -> np.ndarray: ...


def rotate_classes(split: FewShotSplit | np.ndarray) -> FewShotSplit | np.ndarray:
    """Adds each class rotated by 90, 180 and 270 degrees as new classes.

    The augmentation of Santoro et al. (2016) and Vinyals et al. (2016): 1200
    characters become 4800 classes. Applied to ``"vinyals-train"``,
    ``"vinyals-train-noval"``, ``"vinyals-val"`` or ``"vinyals-test"`` it
    gives exactly the classes of the Prototypical Networks split files, with
    their names. Rotations are counter-clockwise (``np.rot90``; Pillow's
    ``Image.rotate``, which those files' loader uses, turns the same way). The
    output is class-major: class ``i`` rotated by ``90 * r`` degrees is class
    ``4 * i + r``, named ``"<name>/rot000"``, ``"/rot090"``, ``"/rot180"``,
    ``"/rot270"``.

    Args:
      split: a ``FewShotSplit`` of square images, or just its ``images``
        array ``[classes, examples, S, S, C]``.

    Returns:
      The same type with 4x the classes.

    Example:
      >>> import numpy as np
      >>> s = FewShotSplit(np.zeros((2, 20, 28, 28, 1), np.uint8), ("a", "b"))
      >>> rotate_classes(s).images.shape
      (8, 20, 28, 28, 1)
    """
    images = split if isinstance(split, np.ndarray) else split.images
    if images.ndim != 5 or images.shape[2] != images.shape[3]:
        raise ValueError(
            f"rotate_classes needs images [classes, examples, S, S, C]; found {images.shape}"
        )
    rotated = np.stack([np.rot90(images, k, axes=(2, 3)) for k in range(4)], axis=1)
    rotated = np.ascontiguousarray(rotated.reshape(-1, *images.shape[1:]))
    if isinstance(split, np.ndarray):
        return rotated
    names = tuple(f"{n}/rot{90 * k:03d}" for n in split.class_names for k in range(4))
    return FewShotSplit(rotated, names)
