"""A folder of class subfolders of images, as a ``FewShotSplit``.

Layout: ``root/<class name>/<image files>``. Classes are sorted by name and
images by file name, so the result does not depend on the file system's
listing order. Hidden files and files with other extensions are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from jmeta.datasets.base import FewShotSplit, stack_classes
from jmeta.datasets.cache import cached_split, fingerprint_folder
from jmeta.datasets.images import decode_images

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def list_image_folder(root: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """Class name -> sorted image paths, for ``root/<class>/<image>``.

    Raises:
      FileNotFoundError: ``root`` does not exist or is not a folder.
      ValueError: ``root`` has no class subfolders, or a class has no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"expected a folder of class subfolders at {root}; found "
            f"{'a file' if root.exists() else 'nothing'}"
        )
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"expected class subfolders in {root}; found none")
    groups = {}
    for folder in classes:
        files = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise ValueError(
                f"expected image files ({', '.join(IMAGE_EXTENSIONS)}) in {folder}; found none"
            )
        groups[folder.name] = files
    return groups


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    channels: int = 3,
    examples_per_class: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    num_workers: int = 0,
) -> FewShotSplit:
    """Loads ``root/<class>/<image>`` files into a ``FewShotSplit``.

    Args:
      root: the folder of class subfolders.
      image_size: resize every image to ``image_size x image_size``; with
        ``None`` all images must already share one size.
      channels: 3 for RGB, 1 for grey-scale.
      examples_per_class: ``None`` requires equal class sizes; ``k`` keeps the
        first ``k`` files (by name) of each class (see ``stack_classes``).
      cache_dir: where decoded arrays are cached (see ``jmeta.datasets.cache``).
      use_cache: read and write the cache. The key hashes each file's relative
        path, size and modification time, plus the options above.
      num_workers: decode in this many spawned processes (0: in this one).

    Returns:
      The split, classes in sorted folder-name order.

    Raises:
      FileNotFoundError, ValueError: missing or empty folders, unreadable
        images, mixed image sizes with ``image_size=None``, unequal classes.

    Example:
      >>> split = load_image_folder("mini-imagenet/train", image_size=84)  # doctest: +SKIP
    """
    groups = list_image_folder(root)

    def build() -> FewShotSplit:
        items = [(f"{p}", p) for files in groups.values() for p in files]
        arrays = decode_images(items, size=image_size, channels=channels, num_workers=num_workers)
        if image_size is None:
            _check_same_size(items, arrays)
        per_class, start = {}, 0
        for name, files in groups.items():
            per_class[name] = arrays[start : start + len(files)]
            start += len(files)
        return stack_classes(per_class, examples_per_class=examples_per_class, source=str(root))

    if not use_cache:
        return build()
    key = "-".join(
        [
            "folder",
            Path(root).resolve().name or "root",
            fingerprint_folder(root, content=False)[:16],
            f"{image_size}px" if image_size else "native",
            f"c{channels}",
            f"k{examples_per_class or 'all'}",
        ]
    )
    return cached_split(cache_dir, key, build)


def _check_same_size(items: list[tuple[str, Path]], arrays: list) -> None:
    first = arrays[0].shape
    for (name, _), arr in zip(items, arrays, strict=True):
        if arr.shape != first:
            raise ValueError(
                f"images have mixed sizes: {items[0][0]} is {first[1]}x{first[0]}, {name} is "
                f"{arr.shape[1]}x{arr.shape[0]}; pass image_size to resize them to one size"
            )
