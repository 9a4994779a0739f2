"""The training configuration: one frozen dataclass, per-dataset defaults, files.

A :class:`TrainConfig` field left at ``None`` takes its data set's default
(:data:`PRESETS`, e.g. MAML's sinusoid settings for ``"sinusoid"``);
:func:`resolve_config` fills them in and checks every field, and a run writes
its resolved configuration to ``config.json``. Files are TOML or JSON objects
whose keys are field names (``load_config``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import tomllib
from pathlib import Path
from typing import Any

from jmeta.datasets.registry import DATASETS

SINUSOID = "sinusoid"
MODELS = ("mlp", "conv4", "resnet12")
BATCH_NORM = ("transductive", "support", "none")
CONV_IMPLS = ("auto", "adaptive", "xla", "im2col")
META_OPTIMIZERS = ("adam", "sgd")
NO_SPLIT = "none"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a meta-training run.

    Fields left at ``None`` take the data set's default (see :data:`PRESETS`
    and ``jmeta train --help``). Two runs with equal resolved configurations
    produce the same parameters and metrics, bit for bit on the same machine.

    Attributes:
      algorithm: a name in :data:`jmeta.train.ALGORITHMS` (``"maml"``, ``"fomaml"``,
        ``"meta_sgd"``, ``"anil"``, ``"boil"``, ...).
      dataset: ``"sinusoid"``, or a :func:`jmeta.datasets.load` name
        (``"omniglot"``, ``"mini_imagenet"``, ``"cifar_fs"``, ``"fc100"``, ``"tfds:NAME"``).
      data_dir: where the data set's files are (``None``: the loader's default).
      train_split, val_split, test_split: split names; ``"none"`` turns
        validation off.
      image_size: side of the square images (``None``: the data set's standard).
      rotations: add 90/180/270-degree rotations of training classes as new
        classes (on device).
      augment: random crop (padding 1/8 of the side) and flip of training images.
      ways, shots, queries: ``N``-way, ``K``-shot, ``Q`` queries per class;
        for sinusoid, ``shots``/``queries`` are support/query points and
        ``ways`` does not apply.
      test_queries: queries per class (points, for sinusoid) in validation and
        test tasks (``None``: ``queries``).
      meta_batch_size: tasks per meta-step.
      inner_steps, inner_lr: inner loop during meta-training.
      test_inner_steps: inner steps at test time; the test set is scored once
        per entry and validation uses the first.
      test_inner_lr: inner step size at test time (``None``: ``inner_lr``).
      first_order: drop second-order terms of the meta-gradient.
      meta_optimizer, meta_lr: the outer optimizer (``"adam"`` or ``"sgd"``).
      num_steps: meta-steps to train for.
      steps_per_call: meta-steps per compiled call; ``eval_interval`` and
        ``checkpoint_interval`` must be multiples of it.
      eval_interval: validate every this many steps (0: never).
      val_tasks: tasks per validation.
      eval_tasks: test tasks (600 by convention).
      eval_seed: names the fixed test task set (validation uses ``eval_seed + 1``).
      seed: initialisation and training tasks.
      model: ``"mlp"``, ``"conv4"`` or ``"resnet12"``.
      width: hidden units (mlp), filters (conv4), first-stage filters
        (resnet12, stages ``w, 2.5w, 5w, 10w``).
      batch_norm: ``"transductive"``, ``"support"`` or ``"none"`` (see
        :mod:`jmeta.models`).
      conv_impl: how convolutions are computed: ``"auto"`` (the models'
        default: the fastest measured on the backend, ``"adaptive"`` on CPU and
        ``"im2col"`` elsewhere), ``"adaptive"`` (``lax.conv`` where the kernel
        is shared by the tasks, a per-task form chosen by the backend where each
        task has its own), ``"im2col"`` (batched matrix products) or ``"xla"``
        (``lax.conv``). Same function, up to floating-point rounding; see
        :mod:`jmeta.models`.
      output_dir: where the run writes (``None``: ``runs/<dataset>-<algorithm>-<time>``).
      checkpoint_interval: save every this many steps (0: only at the end).
      keep_checkpoints: how many recent checkpoints to keep.
    """

    algorithm: str = "maml"
    dataset: str = SINUSOID
    data_dir: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    test_split: str | None = None
    image_size: int | None = None
    rotations: bool | None = None
    augment: bool = False
    ways: int | None = None
    shots: int | None = None
    queries: int | None = None
    test_queries: int | None = None
    meta_batch_size: int | None = None
    inner_steps: int | None = None
    inner_lr: float | None = None
    test_inner_steps: tuple[int, ...] | None = None
    test_inner_lr: float | None = None
    first_order: bool = False
    meta_optimizer: str = "adam"
    meta_lr: float = 1e-3
    num_steps: int | None = None
    steps_per_call: int | None = None
    eval_interval: int | None = None
    val_tasks: int | None = None
    eval_tasks: int = 600
    eval_seed: int = 0
    seed: int = 0
    model: str | None = None
    width: int | None = None
    batch_norm: str = "transductive"
    conv_impl: str = "auto"
    output_dir: str | None = None
    checkpoint_interval: int | None = None
    keep_checkpoints: int = 3

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @property
    def is_regression(self) -> bool:
        return self.dataset == SINUSOID


#: Defaults per data set: the MAML paper's settings where it has them (Finn et al.
#: 2017). Sinusoid: section 5.1. Omniglot 5-way: 1 inner step of 0.4, 32 tasks, one query
#: per class in training (as in the paper's code), 3 steps at test; tested here with 15
#: queries per class. miniImageNet: 32 filters, 5 inner steps of 0.01, 4 tasks, 10 steps
#: at test. A field absent from a preset has no default there.
PRESETS: dict[str, dict[str, Any]] = {
    SINUSOID: dict(
        shots=10, queries=10, meta_batch_size=25, inner_steps=1, inner_lr=0.01,
        test_inner_steps=(1, 10), num_steps=30_000, steps_per_call=1_000,
        eval_interval=5_000, checkpoint_interval=5_000, model="mlp", width=40,
        val_tasks=600,  # as many as the test: validation and test then share one compilation
    ),
    "omniglot": dict(
        train_split="minimal-train", val_split="minimal-val", test_split="minimal-test",
        rotations=True, ways=5, shots=1, queries=1, test_queries=15, meta_batch_size=32,
        inner_steps=1,
        inner_lr=0.4, test_inner_steps=(3,), num_steps=60_000, steps_per_call=10,
        eval_interval=500, checkpoint_interval=500, model="conv4", width=64, val_tasks=200,
    ),
    "mini_imagenet": dict(
        train_split="train", val_split="val", test_split="test", rotations=False, ways=5,
        shots=1, queries=15, meta_batch_size=4, inner_steps=5, inner_lr=0.01,
        test_inner_steps=(10,), num_steps=60_000, steps_per_call=10, eval_interval=500,
        checkpoint_interval=500, model="conv4", width=32, val_tasks=200,
    ),
}  # fmt: skip
PRESETS["cifar_fs"] = dict(PRESETS["mini_imagenet"], width=64)
PRESETS["fc100"] = PRESETS["cifar_fs"]
#: Any other image data set (``tfds:NAME``): tfds' usual split names, no validation.
PRESETS["images"] = dict(
    PRESETS["cifar_fs"], train_split="train", val_split=NO_SPLIT, test_split="test"
)


def preset_for(dataset: str) -> dict[str, Any]:
    """The defaults that apply to ``dataset``."""
    return PRESETS.get(dataset, PRESETS["images"])


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fill ``None`` fields with the data set's defaults and check every field.

    The output directory stays ``None`` if unset (the trainer names it).

    Raises:
      ValueError, TypeError: a field has a bad type or value; the message names
        the field (as its command-line flag would be spelled too).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"expected a TrainConfig; got {type(config).__name__}.")
    _check_names(config)
    preset = preset_for(config.dataset)
    if config.is_regression:
        for name in ("ways", "rotations", "image_size", "train_split", "val_split", "test_split"):
            if getattr(config, name) is not None:
                raise ValueError(f"{_flag(name)} does not apply to sinusoid regression.")
        if config.augment:
            raise ValueError("--augment does not apply to sinusoid regression.")
    filled = {
        f.name: preset.get(f.name)
        for f in dataclasses.fields(config)
        if getattr(config, f.name) is None and preset.get(f.name) is not None
    }
    config = config.replace(**filled)
    if config.test_inner_lr is None:
        config = config.replace(test_inner_lr=config.inner_lr)
    if config.test_queries is None:
        config = config.replace(test_queries=config.queries)
    if config.test_inner_steps is not None:
        config = config.replace(test_inner_steps=tuple(config.test_inner_steps))
    _check_values(config)
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON file of ``field = value`` pairs.

    Returns the pairs as a dict of :class:`TrainConfig` field names (dashes in
    keys are read as underscores); :func:`config_from_dict` builds the config.

    Raises:
      FileNotFoundError, ValueError: missing, unparsable or unknown keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config: no such file: {path}")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ValueError(f"could not parse {path} as {kind}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(
            f"{path} must hold a table/object of config fields; got {type(data).__name__}."
        )
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def config_from_dict(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: all defaults) with ``values`` applied; unknown keys are errors."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; valid fields: {sorted(fields)}.")
    values = dict(values)
    if isinstance(values.get("test_inner_steps"), list):
        values["test_inner_steps"] = tuple(values["test_inner_steps"])
    if isinstance(values.get("test_inner_steps"), numbers.Integral):
        values["test_inner_steps"] = (values["test_inner_steps"],)
    return (base or TrainConfig()).replace(**values)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_names(config: TrainConfig) -> None:
    from jmeta.train.algorithms import ALGORITHMS

    if config.algorithm not in ALGORITHMS:
        raise ValueError(
            f"--algo: unknown algorithm {config.algorithm!r}; expected one of {sorted(ALGORITHMS)}."
        )
    known = [SINUSOID, *DATASETS]
    if not isinstance(config.dataset, str) or not (
        config.dataset in known or (config.dataset.startswith("tfds:") and len(config.dataset) > 5)
    ):
        raise ValueError(
            f"--dataset: unknown data set {config.dataset!r}; expected one of "
            f"{[*known, 'tfds:NAME']}."
        )


def _check_values(config: TrainConfig) -> None:
    positive = ["shots", "queries", "test_queries", "meta_batch_size", "inner_steps", "num_steps",
                "steps_per_call", "val_tasks", "eval_tasks", "width", "keep_checkpoints"]  # fmt: skip
    if not config.is_regression:
        positive += ["ways"] + (["image_size"] if config.image_size is not None else [])
    for name in positive:
        _check_int(name, getattr(config, name), lowest=1)
    for name in ("eval_interval", "checkpoint_interval", "seed", "eval_seed"):
        _check_int(name, getattr(config, name), lowest=0)
    if config.eval_tasks < 2 or config.val_tasks < 2:
        raise ValueError("--eval-tasks and --val-tasks must be >= 2 for a confidence interval.")
    steps = config.test_inner_steps
    if not isinstance(steps, tuple) or not steps:
        raise ValueError(f"--test-inner-steps must be one or more integers; got {steps!r}.")
    for k in steps:
        _check_int("test_inner_steps", k, lowest=0)
    for name in ("inner_lr", "test_inner_lr", "meta_lr"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{_flag(name)} must be a number; got {value!r}.")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{_flag(name)} must be a finite number > 0; got {value}.")
    for name in ("first_order", "augment") + (() if config.is_regression else ("rotations",)):
        if not isinstance(getattr(config, name), bool):
            raise TypeError(f"{_flag(name)} must be true or false; got {getattr(config, name)!r}.")
    _check_choice("meta_optimizer", config.meta_optimizer, META_OPTIMIZERS)
    _check_choice("batch_norm", config.batch_norm, BATCH_NORM)
    _check_choice("conv_impl", config.conv_impl, CONV_IMPLS)
    _check_choice("model", config.model, MODELS)
    if config.is_regression and config.model != "mlp":
        raise ValueError(f"--model {config.model} takes images; sinusoid regression needs mlp.")
    if not config.is_regression and config.model == "mlp":
        raise ValueError(f"--model mlp takes vectors; {config.dataset} needs conv4 or resnet12.")
    from jmeta.train.algorithms import EMBEDDING_ALGORITHMS, EXTRA_INPUTS

    if config.is_regression and config.algorithm in EMBEDDING_ALGORITHMS:
        raise ValueError(
            f"--algo {config.algorithm} classifies by comparing embeddings; "
            "it needs an image data set, not sinusoid regression."
        )
    if not config.is_regression and config.algorithm in EXTRA_INPUTS:
        raise ValueError(
            f"--algo {config.algorithm} feeds its context to an MLP's input; "
            "the trainer runs it on sinusoid regression only."
        )
    for name in ("eval_interval", "checkpoint_interval"):
        value = getattr(config, name)
        if value % config.steps_per_call:
            raise ValueError(
                f"{_flag(name)} ({value}) must be a multiple of --steps-per-call "
                f"({config.steps_per_call}): checks happen between compiled calls."
            )
    for name in ("train_split", "val_split", "test_split", "data_dir", "output_dir"):
        value = getattr(config, name)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{_flag(name)} must be a string; got {value!r}.")
    for name in ("train_split", "test_split"):
        if getattr(config, name) == NO_SPLIT:
            raise ValueError(f"{_flag(name)} cannot be 'none'.")


def _check_int(name: str, value: Any, *, lowest: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{_flag(name)} must be an integer; got {value!r}.")
    if value < lowest:
        raise ValueError(f"{_flag(name)} must be >= {lowest}; got {value}.")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{_flag(name)} must be one of {list(choices)}; got {value!r}.")
