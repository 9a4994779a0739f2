r"""Few-shot classification of your own images with a trained run (``jmeta predict``).

A support folder holds one sub-folder per class (its name is the class name)
with one or more images; the queries are image files or folders of them.
:func:`predict` converts every image as the run's training data were
converted (:class:`~jmeta.datasets.conversion.ImageConversion`, recorded in
the run's marker), restores the run's newest intact checkpoint, adapts the
run's own learner to the support set with the learner's ``adapt`` (the inner
loop of a gradient-based learner with the run's test-time step size and
steps; the prototypes, support embeddings or ridge weights of a metric
learner) and scores every query with its ``predict``: for classes
:math:`c = 1..N` (folders in sorted order),

.. math::

   p(c \mid x) = \operatorname{softmax}_c\, f_{\phi}(x)_c, \qquad
   \phi = \mathrm{adapt}(\theta, \{(x_i, y_i)\}_{\text{support}}).

A gradient-based learner's head has ``ways`` outputs; with fewer classes the
softmax is taken over the first ``N``, the ones the support set labels.

All queries form one batch, as the query set of a test task does: with the
default ``batch_norm="transductive"`` their batch-norm statistics are those of
the batch, so a query's probabilities depend on the other queries (as in the
run's evaluation); a ``batch_norm="support"`` or ``"none"`` run scores each
query on its own.

Like ``jmeta eval`` it reads the run without its lock: ``config.json`` is
replaced atomically and a complete checkpoint is never modified.

Reference: the task protocol of Vinyals et al., "Matching Networks for One
Shot Learning", NeurIPS 2016; the learners as cited by their builders.
"""

from __future__ import annotations

import csv
import functools
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jmeta
from jmeta.datasets.conversion import ImageConversion, dataset_conversion
from jmeta.train import outputs
from jmeta.train.algorithms import ALGORITHMS, LearnerSpec
from jmeta.train.build import build_learners, initial_state, meta_optimizer
from jmeta.train.checkpoint import Checkpoints
from jmeta.train.compilation_cache import enable_compilation_cache
from jmeta.train.config import ConfigError, TrainConfig
from jmeta.train.problem import Problem, build_model, build_problem
from jmeta.train.resume import expected
from jmeta.train.scoring import find_run
from jmeta.types import Batch

PathLike = str | os.PathLike[str]
#: The marker's key for the run's image conversion.
IMAGES = "images"


class InputError(ConfigError):
    """Bad input to :func:`predict`: a run, support or query path that cannot be used.

    ``str(err)`` names the argument (``support: ...``); :meth:`render` names it
    otherwise (``jmeta predict`` names its flags).
    """


class InputValueError(InputError, ValueError):
    """An input that exists but cannot be used (an empty class folder, an unreadable image)."""


class InputNotFound(InputError, FileNotFoundError):
    """An input path that does not exist, or a folder that holds no run."""


class Predictions(NamedTuple):
    """What :func:`predict` returns: class probabilities for every query image.

    Attributes:
      files: the query images scored, in order.
      classes: the class names (support folders, sorted); column ``c`` of
        ``probabilities`` is ``classes[c]``.
      probabilities: float32 ``[len(files), len(classes)]``; rows sum to 1.
      skipped: ``(path, reason)`` of each unreadable file skipped
        (``skip_bad=True``).
      step: the meta-step of the checkpoint used.
    """

    files: tuple[Path, ...]
    classes: tuple[str, ...]
    probabilities: np.ndarray
    skipped: tuple[tuple[Path, str], ...]
    step: int

    @property
    def labels(self) -> tuple[str, ...]:
        """The predicted class of each query."""
        return tuple(self.classes[i] for i in np.argmax(self.probabilities, axis=1))

    def rows(self) -> list[dict[str, Any]]:
        """One dict per query: ``file``, ``class``, ``probability``, ``runner_up``,
        ``runner_up_probability``."""
        out = []
        for file, p in zip(self.files, self.probabilities, strict=True):
            first, second = np.argsort(-p, kind="stable")[:2]
            out.append({"file": str(file), "class": self.classes[first],
                        "probability": float(p[first]), "runner_up": self.classes[second],
                        "runner_up_probability": float(p[second])})  # fmt: skip
        return out

    def table(self) -> str:
        """The rows as an aligned text table (probabilities in %)."""
        head = ("file", "predicted", "probability", "runner-up", "probability")
        body = [
            (r["file"], r["class"], f"{100 * r['probability']:.1f}%", r["runner_up"],
             f"{100 * r['runner_up_probability']:.1f}%")
            for r in self.rows()
        ]  # fmt: skip
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(5)]
        right = (False, False, True, False, True)
        lines = [
            "  ".join(
                c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)
            )
            for row in [head, *body]
        ]
        return "\n".join(line.rstrip() for line in lines)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: the step, the classes, the rows and the skipped files."""
        return {"step": self.step, "classes": list(self.classes), "predictions": self.rows(),
                "skipped": [{"file": str(f), "reason": r} for f, r in self.skipped]}  # fmt: skip

    def to_csv(self) -> str:
        """The rows as CSV, with a header line."""
        buffer = io.StringIO()
        fields = ["file", "class", "probability", "runner_up", "runner_up_probability"]
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return buffer.getvalue()


def predict(
    run: PathLike,
    support: PathLike,
    queries: PathLike | Sequence[PathLike],
    *,
    inner_steps: int | None = None,
    skip_bad: bool = False,
    seed: int = 0,
) -> Predictions:
    """Classify ``queries`` among the classes of ``support`` with the run's learner.

    Args:
      run: a run folder (its newest intact checkpoint) or one
        ``checkpoints/<step>`` folder of it.
      support: a folder of class folders, each with one or more images.
      queries: an image file or a folder of images (searched recursively), or
        a sequence of them.
      inner_steps: inner steps of a gradient-based learner (default: the
        run's first ``test_inner_steps``); metric learners have none.
      skip_bad: skip files Pillow cannot read (listed in
        :attr:`Predictions.skipped`) instead of raising.
      seed: the PRNG key passed to ``adapt`` (jmeta's learners use none).

    Returns:
      :class:`Predictions`.

    Raises:
      InputNotFound: a path that does not exist, or ``run`` holds no run.
      InputValueError: an empty class folder, fewer than 2 classes, more
        classes than a gradient-based learner's head has outputs, an
        unreadable image (without ``skip_bad``), a query folder without
        images, a regression run.
      CheckpointDamaged, CheckpointMismatch: as for ``jmeta eval``.

    Example:
      >>> from jmeta.train import predict
      >>> out = predict("runs/x", "my_support", ["query.png"])  # doctest: +SKIP
      >>> print(out.table())  # doctest: +SKIP
    """
    run_dir, step, config, conversion = read_run(run)
    enable_compilation_cache()
    steps = config.test_inner_steps[0] if inner_steps is None else inner_steps
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
        raise InputValueError("{0} must be an integer >= 0; got {v}.", ["inner_steps"], v=steps)
    skipped: list[tuple[Path, str]] = []
    classes, support_x, counts = _read_support(Path(support), conversion, skip_bad, skipped)
    files, query_x = _read_queries(queries, conversion, skip_bad, skipped)
    algorithm = ALGORITHMS[config.algorithm]
    if not algorithm.embedding and len(classes) > int(config.ways or 0):
        raise InputValueError(
            "{0}: {path} holds {n} class folders, but the run's {algo} head has {ways} outputs "
            "(it was trained {ways}-way); give at most {ways} classes.",
            ["support"], path=support, n=len(classes), algo=config.algorithm, ways=config.ways,
        )  # fmt: skip
    scores, meta_params, step = _restore(run_dir, step, config, conversion, counts)
    support_y = np.repeat(np.arange(len(classes), dtype=np.int32), counts)
    key = jax.random.key(seed)
    probabilities = scores(meta_params, support_x, support_y, query_x, key, steps=int(steps))
    return Predictions(
        tuple(files), tuple(classes), np.asarray(probabilities), tuple(skipped), int(step)
    )


def read_run(run: PathLike) -> tuple[Path, int | None, TrainConfig, ImageConversion]:
    """``(run folder, checkpoint step or None, saved config, image conversion)`` of ``run``.

    The conversion is the one recorded in the run's marker, or for a run that
    recorded none, derived from its data set (:func:`dataset_conversion`).

    Raises:
      InputNotFound: ``run`` does not exist or holds no jmeta run.
      InputValueError: the run is not an image classification run, or its
        marker cannot be read.
    """
    path = Path(run)
    if not path.is_dir():
        what = "a file, not a run folder" if path.exists() else "no such folder"
        raise InputNotFound("{0}: {path}: {what}.", ["run"], path=path, what=what)
    run_dir, step = find_run(path)
    try:
        record = outputs.read_record(run_dir)
    except ValueError as err:
        raise InputValueError("{0}: {err}", ["run"], err=err) from None
    if record is None:
        raise InputNotFound(
            "{0}: {path} is not a jmeta run: {dir} has no {marker} (give a run folder or one "
            "of its checkpoints/<step> folders).",
            ["run"], path=path, dir=run_dir, marker=outputs.MARKER,
        )  # fmt: skip
    try:
        config = outputs.saved_config(run_dir)
    except (FileNotFoundError, ValueError, TypeError) as err:
        raise InputNotFound("{0}: {err}", ["run"], err=err) from None
    if config.is_regression:
        raise InputValueError(
            "{0}: the run in {dir} is sinusoid regression; predict classifies images.",
            ["run"], dir=run_dir,
        )  # fmt: skip
    try:
        if isinstance(record.get(IMAGES), dict):
            conversion = ImageConversion.from_dict(record[IMAGES])
        else:
            conversion = dataset_conversion(config.dataset, config.image_size)
    except ValueError as err:
        raise InputValueError("{0}: {dir}: {err}.", ["run"], dir=run_dir, err=err) from None
    return run_dir, step, config, conversion


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _image_files(folder: Path) -> list[Path]:
    """Every non-hidden file under ``folder``, sorted (Pillow decides what is an image)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and _visible(p, folder))


def _load(
    path: Path, conversion: ImageConversion, argument: str, skip_bad: bool, skipped: list
) -> np.ndarray | None:
    try:
        return conversion.load(path)
    except ValueError as err:
        if skip_bad:
            skipped.append((path, str(err)))
            return None
        raise InputValueError(
            "{0}: {err}. Pass {1} to skip unreadable files.", [argument, "skip_bad"], err=err
        ) from None


def _read_support(root: Path, conversion, skip_bad: bool, skipped: list):
    if not root.is_dir():
        what = "a file" if root.exists() else "nothing"
        raise InputNotFound(
            "{0}: expected a folder of class folders at {path}; found {what}.",
            ["support"], path=root, what=what,
        )  # fmt: skip
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        found = f"only {folders[0].name!r}" if folders else "none"
        raise InputValueError(
            "{0}: {path} must hold one folder per class, at least 2 classes; found {found}.",
            ["support"], path=root, found=found,
        )  # fmt: skip
    arrays, counts = [], []
    for folder in folders:
        loaded = [_load(p, conversion, "support", skip_bad, skipped) for p in _image_files(folder)]
        images = [a for a in loaded if a is not None]
        if not images:
            why = "no readable image" if loaded else "no image"
            raise InputValueError(
                "{0}: the class folder {path} holds {why}; every class needs at least one.",
                ["support"], path=folder, why=why,
            )  # fmt: skip
        arrays += images
        counts.append(len(images))
    return [f.name for f in folders], np.stack(arrays), counts


def _read_queries(queries, conversion, skip_bad: bool, skipped: list):
    paths = [queries] if isinstance(queries, str | os.PathLike) else list(queries)
    if not paths:
        raise InputValueError("{0}: no query image or folder given.", ["queries"])
    files: list[Path] = []
    arrays = []
    for given in map(Path, paths):
        if not given.exists():
            raise InputNotFound("{0}: no such file or folder {path}.", ["queries"], path=given)
        candidates = _image_files(given) if given.is_dir() else [given]
        loaded = [(p, _load(p, conversion, "queries", skip_bad, skipped)) for p in candidates]
        found = [(p, a) for p, a in loaded if a is not None]
        if given.is_dir() and not found:
            why = "no readable image" if candidates else "no image files"
            raise InputValueError(
                "{0}: the folder {path} holds {why}.", ["queries"], path=given, why=why
            )
        files += [p for p, _ in found]
        arrays += [a for _, a in found]
    if not arrays:
        raise InputValueError("{0}: every query image was unreadable (skipped).", ["queries"])
    return files, np.stack(arrays)


def _restore(run_dir: Path, step, config: TrainConfig, conversion, counts):
    """The checkpoint's meta-parameters, its step, and the compiled scoring of this support set."""
    balanced = len(set(counts)) == 1
    program = _program(config, conversion.shape, counts[0] if balanced else None, len(counts))
    with Checkpoints(run_dir / outputs.CHECKPOINTS, keep=config.keep_checkpoints) as ckpts:
        state = ckpts.restore(like=program.like, step=step, expect=expected(config))
    return program.scores, state.meta_params, int(state.step)


class _Program(NamedTuple):
    like: Any  # the checkpoint's structure
    scores: Any  # (meta_params, support_x, support_y, query_x, key, steps) -> probabilities


@functools.lru_cache(maxsize=8)  # one compilation per run and support-set layout, not per call
def _program(config: TrainConfig, shape, shots: int | None, num_classes: int) -> _Program:
    """The run's state structure and the learner for ``num_classes`` classes (``shots`` each,
    or unbalanced when ``None``), adapted and applied in one compiled function."""
    model = build_model(config, shape)
    losses = jmeta.losses
    train_classes = None
    if ALGORITHMS[config.algorithm].pretraining:  # its classifier is sized by the training split
        train_classes = build_problem(config, splits=("train",)).train_classes
    problem = Problem(
        None,
        None,
        None,
        model,
        losses.cross_entropy,
        {"accuracy": losses.accuracy},
        shape,
        train_classes=train_classes,
    )
    train_learner, _ = build_learners(config, problem)
    fns = jmeta.meta_train_step(train_learner, meta_optimizer(config))
    like, _ = initial_state(fns, train_learner, model, config.seed, abstract=True)
    spec = LearnerSpec(
        config=config if shots is None else config.replace(shots=shots),
        model=model,
        loss_fn=problem.loss_fn,
        metrics=problem.metrics,
        inner_lr=config.test_inner_lr,
        inner_steps=config.inner_steps,
        transductive=config.batch_norm != "support",
        num_classes=None if shots is not None else num_classes,
        input_shape=shape,
        train_classes=train_classes,
    )
    learner = ALGORITHMS[config.algorithm].build(spec)

    @functools.partial(jax.jit, static_argnames="steps")
    def scores(meta_params, support_x, support_y, query_x, key, steps):
        support = Batch(jmeta.tasks.to_float(support_x), support_y)
        adapted = learner.adapt(meta_params, support, key, steps)
        logits = learner.predict(adapted, jmeta.tasks.to_float(query_x))
        return jax.nn.softmax(logits[:, :num_classes].astype(jnp.float32), axis=-1)

    return _Program(like, scores)
