"""Write a run's fixed test tasks as image folders, and score them with ``predict``.

Shared by tests/train/test_predict.py (fake Omniglot, in the test process) and the
real-data test in tests/train/test_real_omniglot.py, which runs :func:`main` in a
subprocess with XLA's default flags.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jax
import numpy as np

import jmeta
from jmeta.datasets import load
from jmeta.datasets.omniglot_files import STEMS, find_source, omniglot_dir, read_source
from jmeta.evaluation import task_keys

REPO = Path(__file__).resolve().parents[1]
ZIPS = ("images_background_small1.zip", "images_background_small2.zip")


def real_omniglot_dir() -> Path:
    """Where the real minimal Omniglot zips are (as tests/train/test_real_omniglot.py)."""
    env = os.environ.get("JMETA_OMNIGLOT_DIR_FOR_TESTS") or os.environ.get("JMETA_OMNIGLOT_DIR")
    return Path(env) if env else (REPO / ".." / "shared" / "data" / "omniglot").resolve()


def source_files(data_dir: str | Path) -> dict[str, list[tuple[str, bytes | Path]]]:
    """Class name -> its drawings' release files (bytes or paths), small1 before small2."""
    files: dict[str, list] = {}
    for source in ("small1", "small2"):
        root = omniglot_dir(data_dir)
        for name, drawings in read_source(find_source(root, STEMS[source])).items():
            files.setdefault(name, drawings)
    return files


def write_tasks(config, folder: Path, num_tasks: int) -> list[tuple[Path, Path, list[int]]]:
    """The first ``num_tasks`` test tasks of ``config``'s run as folders of release files.

    Task ``i`` is the one ``jmeta eval`` draws (from ``split(fold_in(key(eval_seed), i))[0]``,
    see :func:`jmeta.evaluate`).
    Support folders are named ``<label>_<character>`` so that sorted order is label
    order. Returns ``(support folder, query folder, query labels)`` per task.
    """
    split = load("omniglot", config.test_split, data_dir=config.data_dir,
                 image_size=config.image_size)  # fmt: skip
    where = {split.images[c, e].tobytes(): (c, e) for c in range(split.images.shape[0])
             for e in range(split.images.shape[1])}  # fmt: skip
    files = source_files(config.data_dir)
    sample = jax.jit(
        lambda key: jmeta.tasks.few_shot(
            key, split.images, ways=config.ways, shots=config.shots, queries=config.test_queries
        )  # fmt: skip
    )
    out = []
    for i, key in enumerate(task_keys(config.eval_seed, num_tasks)):
        task = jax.device_get(sample(jax.random.split(key)[0]))
        root = folder / f"task{i}"

        def write(x, target: Path) -> None:
            c, e = where[np.rint(np.asarray(x) * 255).astype(np.uint8).tobytes()]
            name, data = files[split.class_names[c]][e]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data if isinstance(data, bytes) else Path(data).read_bytes())

        for j, (x, y) in enumerate(zip(task.support.x, task.support.y, strict=True)):
            write(x, root / "support" / f"{int(y):02d}_class" / f"{j:03d}.png")
        for j, x in enumerate(task.query.x):
            write(x, root / "query" / f"{j:03d}.png")
        out.append((root / "support", root / "query", [int(y) for y in task.query.y]))
    return out


def agreement(run_dir: Path, folder: Path, num_tasks: int) -> dict[str, float]:
    """``jmeta eval``'s and ``predict``'s accuracy on the run's first ``num_tasks`` test tasks."""
    from jmeta.train import evaluate_checkpoint, predict, saved_config

    config = saved_config(run_dir)
    scores, _ = evaluate_checkpoint(run_dir, num_tasks=num_tasks)
    correct = []
    for support, query, labels in write_tasks(config, folder, num_tasks):
        out = predict(run_dir, support, query)
        predicted = [int(label.split("_", 1)[0]) for label in out.labels]
        correct.append(np.mean(np.equal(predicted, labels)))
    steps = config.test_inner_steps[0]
    return {"eval": scores[steps]["accuracy"].mean, "predict": float(np.mean(correct))}


def main(argv: list[str]) -> None:
    """``python predict_helpers.py RUN FOLDER TASKS``: print the agreement on RUN's test tasks."""
    with jax.numpy_dtype_promotion("standard"):
        print(json.dumps(agreement(Path(argv[0]), Path(argv[1]), int(argv[2]))))


if __name__ == "__main__":
    main(sys.argv[1:])
