"""The training configuration: one frozen dataclass whose fields are all set, and files.

``TrainConfig(dataset="omniglot", ways=20)`` is a complete configuration: a
field not given takes its data set's preset (:data:`PRESETS`, e.g. the MAML
paper's sinusoid settings for ``"sinusoid"``) when the config is constructed,
and every field is checked then, against its type, its range and what the
code can represent (seeds are 32-bit, step counts and sizes int32). A bad
value raises :class:`ConfigError` (a ``ValueError`` or ``TypeError``) that
names the field; the command line renders the same error with flag names.

Each field is declared once, below, with its type, default or per-data-set
preset, range and help text; the command-line flags, their help and
:data:`PRESETS` are generated from those declarations. Files are TOML or JSON
objects whose keys are field names (:func:`load_config`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from jmeta import models
from jmeta.datasets.registry import DATASETS
from jmeta.train.algorithms import ALGORITHMS
from jmeta.validation import is_integer

SINUSOID = "sinusoid"
#: The preset key of any image data set without presets of its own (``tfds:NAME``).
IMAGES = "images"
MODELS = ("mlp", "conv4", "resnet12")
BATCH_NORM = models.BATCH_NORM_MODES
CONV_IMPLS = models.CONV_IMPLS
META_OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
NO_SPLIT = "none"

INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
_FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_STEPS = "the step counter is int32"
_SIZE = "sizes are int32 in JAX"
_CI = "for a confidence interval"

#: The fields that decide what meta-parameters a run makes (with ``meta_lr`` and
#: ``num_steps``, which a resumed run may change): every checkpoint records them,
#: and a checkpoint is refused where they differ from its run's configuration.
PARAMETER_FIELDS = (
    "algorithm", "dataset", "train_split", "image_size", "rotations", "augment", "affine", "ways",
    "shots", "queries", "meta_batch_size", "inner_steps", "inner_lr", "first_order",
    "meta_optimizer", "seed", "model", "width", "batch_norm", "conv_impl", "seeds",
)  # fmt: skip


class ConfigError(Exception):
    """A bad configuration value; the message names the fields involved.

    ``str(err)`` names fields as in Python (``meta_batch_size``);
    :meth:`render` names them otherwise (the command line: ``--meta-batch-size``).
    Raised as :class:`ConfigValueError` or :class:`ConfigTypeError`.

    Args:
      template: the message; ``{0}``, ``{1}``... stand for ``fields``, other
        ``{name}`` for ``values``.
      fields: the fields the message names.
      **values: the other parts of the message.

    Attributes:
      fields: the fields the message names.
    """

    def __init__(self, template: str, fields: Sequence[str] = (), **values: Any):
        self.template = template
        self.fields = tuple(fields)
        self.values = {k: str(v) for k, v in values.items()}
        super().__init__(self.render(str))

    def render(self, name: Callable[[str], str]) -> str:
        """The message with each field spelled ``name(field)``."""
        return self.template.format(*map(name, self.fields), **self.values)

    def renamed(self, names: Mapping[str, str]) -> ConfigError:
        """The same error naming ``names[field]`` for ``field`` (e.g. a function's argument)."""
        fields = [names.get(f, f) for f in self.fields]
        return type(self)(self.template, fields, **self.values)

    def __reduce__(self):
        return _rebuild, (type(self), self.template, self.fields, self.values)


def _rebuild(cls, template, fields, values):
    return cls(template, fields, **values)


class ConfigValueError(ConfigError, ValueError):
    """A configuration value out of range, or fields that contradict each other."""


class ConfigTypeError(ConfigError, TypeError):
    """A configuration value of the wrong type."""


class Setting(NamedTuple):
    """How a field is set and checked (its type is the field's annotation).

    Attributes:
      help: one line for ``jmeta train --help`` and the docstring.
      preset: data set -> value (``"images"``: any other image data set), for a
        field whose default depends on the data set.
      same_as: the field whose value this one takes when neither given nor preset.
      low, high: the range of an integer (of each, for a tuple); ``low_why`` and
        ``why`` say where the bounds come from.
      choices: the allowed strings (a function: looked up when checked).
      flags: command-line spellings (default: ``--field-name``).
      images_only: the field does not apply to sinusoid regression (must stay unset).
      per_algorithm: the default is the algorithm's (:class:`~jmeta.train.Algorithm`).
    """

    help: str
    preset: Mapping[str, Any] | None = None
    same_as: str | None = None
    low: int | None = None
    high: int | None = None
    why: str = ""
    low_why: str = ""
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    flags: tuple[str, ...] = ()
    images_only: bool = False
    per_algorithm: bool = False


def setting(default: Any = None, help: str = "", **options: Any) -> Any:
    """A :class:`TrainConfig` field: its default (``None``: preset or ``same_as``) and setting."""
    return dataclasses.field(default=default, metadata={"setting": Setting(help, **options)})


#: The presets below are the MAML paper's settings where it has them (Finn et al. 2017).
#: Sinusoid: section 5.1. Omniglot 5-way: 1 inner step of 0.4, 32 tasks, one query per class in
#: training (as in the paper's code), 3 steps at test; tested here with 15 queries per class.
#: miniImageNet: 32 filters, 5 inner steps of 0.01, 4 tasks, 10 steps at test. CIFAR-FS, FC100
#: and other image data sets: miniImageNet's, with 64 filters.
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a meta-training run; every field is set and checked.

    Construct it with the fields you choose; the others take their default,
    or their data set's preset (:data:`PRESETS`, shown per data set by
    ``jmeta train --help``). Two runs with equal configurations produce the
    same parameters and metrics, bit for bit on the same machine. Use
    :meth:`replace` for a changed copy: fields that were not given are derived
    again (a new ``dataset`` brings its own presets).

    ``None`` remains only where a field does not apply (``ways`` of sinusoid
    regression) or means "the loader's/trainer's choice" (``data_dir``,
    ``image_size``, ``output_dir``).

    Raises:
      ConfigValueError, ConfigTypeError: a field has a bad value or type, or
        fields contradict each other; the message names the fields.

    Example:
      >>> from jmeta.train import TrainConfig
      >>> config = TrainConfig(dataset="omniglot", ways=20)
      >>> config.shots, config.inner_lr, config.model
      (1, 0.4, 'conv4')
    """

    # fmt: off
    algorithm: str = setting("maml", "meta-learning algorithm", flags=("--algo", "--algorithm"),
                             choices=lambda: sorted(ALGORITHMS))
    dataset: str = setting(SINUSOID,
                           "sinusoid, omniglot, mini_imagenet, cifar_fs, fc100 or tfds:NAME")
    data_dir: str | None = setting(None, "folder holding the data set's files (default: the "
                                   "loader's; for omniglot $JMETA_OMNIGLOT_DIR or the cache "
                                   "folder)")
    train_split: str | None = setting(help="training split", images_only=True,
                                      preset={"omniglot": "minimal-train", IMAGES: "train"})
    val_split: str | None = setting(help="validation split ('none': no validation)",
                                    images_only=True, preset={"omniglot": "minimal-val",
                                    "mini_imagenet": "val", "cifar_fs": "val", "fc100": "val",
                                    IMAGES: NO_SPLIT})
    test_split: str | None = setting(help="test split", images_only=True,
                                     preset={"omniglot": "minimal-test", IMAGES: "test"})
    image_size: int | None = setting(None, "side of the square images, in pixels (default: the "
                                     "data set's own)", low=1, high=INT32_MAX, why=_SIZE,
                                     images_only=True)
    rotations: bool | None = setting(help="add 90/180/270-degree rotations of training classes "
                                     "as classes", images_only=True,
                                     preset={"omniglot": True, IMAGES: False})
    eval_rotations: bool = setting(False, "the same for validation and test classes",
                                   images_only=True)
    augment: bool = setting(False, "random crop and flip of training images", images_only=True)
    affine: bool = setting(False, "small random affine transforms of training images (shift "
                           "up to 2 px, rotation up to 10 degrees, scale and shear up to 0.1), "
                           "on device", images_only=True)
    ways: int | None = setting(help="classes per task (N)", low=1, high=INT32_MAX, why=_SIZE,
                               images_only=True, preset={IMAGES: 5})
    test_ways: int | None = setting(help="classes per validation and test task (a metric "
                                    "learner may train with more ways than it tests with, as "
                                    "ProtoNets do; a head allows at most its training ways)",
                                    same_as="ways", low=1, high=INT32_MAX, why=_SIZE,
                                    images_only=True)
    shots: int = setting(help="support examples per class (K); support points for sinusoid",
                         low=1, high=INT32_MAX, why=_SIZE, preset={SINUSOID: 10, IMAGES: 1})
    queries: int = setting(help="query examples per class; query points for sinusoid",
                           low=1, high=INT32_MAX, why=_SIZE,
                           preset={SINUSOID: 10, "omniglot": 1, IMAGES: 15})
    test_queries: int = setting(help="queries per class in validation and test tasks",
                                same_as="queries", low=1, high=INT32_MAX, why=_SIZE,
                                preset={"omniglot": 15})
    meta_batch_size: int = setting(help="tasks per meta-step", low=1, high=INT32_MAX, why=_SIZE,
                                   preset={SINUSOID: 25, "omniglot": 32, IMAGES: 4})
    inner_steps: int = setting(help="inner-loop steps during meta-training", low=1,
                               high=INT32_MAX, why=_SIZE,
                               preset={SINUSOID: 1, "omniglot": 1, IMAGES: 5})
    inner_lr: float = setting(help="inner-loop step size during meta-training",
                              preset={SINUSOID: 0.01, "omniglot": 0.4, IMAGES: 0.01})
    test_inner_steps: tuple[int, ...] = setting(
        help="inner steps at test time; several values score the test set once each, validation "
        "uses the first", low=0, high=INT32_MAX, why=_SIZE,
        preset={SINUSOID: (1, 10), "omniglot": (3,), IMAGES: (10,)})
    test_inner_lr: float = setting(help="inner step size at test time", same_as="inner_lr")
    first_order: bool = setting(False, "first-order meta-gradient (no second derivatives)")
    meta_optimizer: str = setting("adam", "outer optimizer", choices=META_OPTIMIZERS)
    meta_lr: float = setting(1e-3, "outer learning rate")
    meta_lr_schedule: str = setting(None, "meta-learning rate over the run: constant, or cosine "
                                    "annealing to a hundredth of meta_lr at num_steps (default: "
                                    "the algorithm's: cosine for mamlpp, else constant; a "
                                    "cosine run resumes only with its num_steps)",
                                    choices=LR_SCHEDULES, per_algorithm=True)
    num_steps: int = setting(help="meta-steps to train for", low=1, high=INT32_MAX, why=_STEPS,
                             preset={SINUSOID: 30_000, IMAGES: 60_000})
    steps_per_call: int = setting(help="meta-steps per compiled call (intervals must be "
                                  "multiples of it)", low=1, high=INT32_MAX, why=_STEPS,
                                  preset={SINUSOID: 1_000, IMAGES: 10})
    eval_interval: int = setting(help="validate every this many meta-steps (0: never)", low=0,
                                 high=INT32_MAX, why=_STEPS,
                                 preset={SINUSOID: 5_000, IMAGES: 500})
    # Sinusoid validates on as many tasks as the test: the two share one compilation.
    val_tasks: int = setting(help="tasks per validation", low=2, low_why=_CI, high=INT32_MAX,
                             why=_SIZE, preset={SINUSOID: 600, IMAGES: 200})
    eval_tasks: int = setting(600, "fixed test tasks", low=2, low_why=_CI, high=INT32_MAX,
                              why=_SIZE)
    eval_seed: int = setting(0, "names the fixed test task set (validation uses the next seed)",
                             low=0, high=UINT32_MAX - 1,
                             why="seeds are uint32, and validation uses the next seed")
    seed: int = setting(0, "initialisation and training tasks", low=0, high=UINT32_MAX,
                        why="seeds are uint32")
    seeds: tuple[int, ...] | None = setting(None, "train several seeds together, one compiled "
                                            "program vmapped over the runs; each seed as a run "
                                            "with that seed (default: none: one run, seed)",
                                            low=0, high=UINT32_MAX, why="seeds are uint32")
    model: str = setting(help="network", choices=MODELS,
                         preset={SINUSOID: "mlp", IMAGES: "conv4"})
    width: int = setting(help="hidden units (mlp) or filters (conv4; first stage of resnet12)",
                         low=1, high=INT32_MAX, why=_SIZE,
                         preset={SINUSOID: 40, "mini_imagenet": 32, IMAGES: 64})
    batch_norm: str = setting("transductive", "batch-norm statistics from", choices=BATCH_NORM)
    conv_impl: str = setting("auto", "how convolutions are computed: adaptive, XLA "
                             "convolutions or im2col matrix products (auto: "
                             f"{models.DEFAULT_CONV_IMPL_REASON})",
                             choices=CONV_IMPLS)
    output_dir: str | None = setting(None, "folder for the run's files (default: "
                                     "runs/<dataset>-<algo>-<time>)")
    checkpoint_interval: int = setting(help="checkpoint every this many meta-steps (0: only at "
                                       "the end)", low=0, high=INT32_MAX, why=_STEPS,
                                       preset={SINUSOID: 5_000, IMAGES: 500})
    keep_checkpoints: int = setting(3, "recent checkpoints to keep", low=1)
    keep_best: bool = setting(False, "also keep the checkpoint with the best validation score "
                              "(accuracy; MSE for regression) in best/; the final test and "
                              "jmeta eval score it")
    early_stop: int = setting(0, "stop after this many validations without improvement (0: "
                              "never)", low=0, high=INT32_MAX, why=_STEPS)
    time_limit: float | None = setting(None, "stop meta-training after this many seconds of "
                                       "this call's wall time, checked after each compiled "
                                       "call (default: none); the state reached is "
                                       "checkpointed and tested, and --resume continues it")
    devices: int | None = setting(None, "devices of this process to split each meta-batch and "
                                  "evaluation batch over (default: all of them)", low=1,
                                  high=INT32_MAX, why=_SIZE)
    coordinator_address: str | None = setting(None, "host:port of process 0, to train with "
                                              "several processes (jax.distributed; default: "
                                              "$JAX_COORDINATOR_ADDRESS, or SLURM's under srun)")
    num_processes: int | None = setting(None, "processes of a run with several (default: as "
                                        "JAX finds it)", low=1, high=INT32_MAX, why=_SIZE)
    process_id: int | None = setting(None, "this process's number, 0 to --num-processes - 1 "
                                     "(default: as JAX finds it)", low=0, high=INT32_MAX,
                                     why=_SIZE)
    coordinator_timeout: int = setting(300, "seconds to wait for every process to join",
                                       low=1, high=INT32_MAX, why=_SIZE)
    # fmt: on

    #: Fields given when the config was made (the others were derived).
    _given: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        given = {name for name in FIELDS if getattr(self, name) is not None}
        for name, value in _resolve({name: getattr(self, name) for name in FIELDS}).items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_given", frozenset(given))

    @property
    def given(self) -> frozenset[str]:
        """The fields given when the config was made (the others were derived)."""
        return self._given

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied and the fields not given derived again.

        Fields set by a preset or copied from another field take their value
        for the new configuration (``replace(dataset="omniglot")`` brings
        Omniglot's presets); fields that were given keep their value.
        """
        _check_known(changes)
        kept = {
            name: getattr(self, name)
            for name, field in FIELDS.items()
            if name in self._given or not field.derived
        }
        return TrainConfig(**{**kept, **changes})

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @property
    def is_regression(self) -> bool:
        return self.dataset == SINUSOID


class Field(NamedTuple):
    """A :class:`TrainConfig` field as the checks and the command line see it.

    Attributes:
      name: the field's name.
      kind: ``int``, ``float``, ``bool``, ``str`` or ``tuple`` (of ints).
      optional: ``None`` is a valid resolved value.
      default: the dataclass default (``None``: preset or ``same_as``).
      setting: the :class:`Setting`.
    """

    name: str
    kind: type
    optional: bool
    default: Any
    setting: Setting

    @property
    def derived(self) -> bool:
        """Whether an unset value is filled from a preset or another field."""
        s = self.setting
        return s.preset is not None or s.same_as is not None or s.per_algorithm

    def choices(self) -> Sequence[str] | None:
        choices = self.setting.choices
        return choices() if callable(choices) else choices


def _fields() -> dict[str, Field]:
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for f in dataclasses.fields(TrainConfig):
        hint, optional = hints[f.name], False
        if isinstance(hint, types.UnionType):
            (hint,) = [t for t in typing.get_args(hint) if t is not type(None)]
            optional = True
        kind = typing.get_origin(hint) or hint
        out[f.name] = Field(f.name, kind, optional, f.default, f.metadata["setting"])
    return out


#: Field name -> :class:`Field`, in declaration order.
FIELDS: Mapping[str, Field] = types.MappingProxyType(_fields())


def preset_for(dataset: str) -> dict[str, Any]:
    """The presets that apply to ``dataset`` (``"images"``: any image data set without its own)."""
    out = {}
    for name, field in FIELDS.items():
        preset = field.setting.preset or {}
        key = dataset if dataset in preset or dataset == SINUSOID else IMAGES
        if key in preset:
            out[name] = preset[key]
    return out


#: Data set -> its presets, derived from the fields (read-only).
PRESETS: Mapping[str, Mapping[str, Any]] = types.MappingProxyType(
    {name: types.MappingProxyType(preset_for(name)) for name in (SINUSOID, *DATASETS, IMAGES)}
)


def default_text(field: Field, name: Callable[[str], str] = str) -> str:
    """The default of ``field`` in words, per data set where it has presets."""
    if not field.derived:
        value = field.default
        return f"default: {_words(value)}"
    preset = field.setting.preset or {}
    named = [d for d in preset if d not in (SINUSOID, IMAGES)]
    groups: dict[str, list[str]] = {}
    for dataset, value in preset.items():
        label = ("other image data" if named else "image data") if dataset == IMAGES else dataset
        groups.setdefault(_words(value), []).append(label)
    parts = [f"{value} for {'/'.join(labels)}" for value, labels in groups.items()]
    if field.setting.same_as is not None:
        parts.append(("otherwise " if parts else "") + name(field.setting.same_as))
    return "default: " + "; ".join(parts)


def _words(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


def resolve_config(config: TrainConfig) -> TrainConfig:
    """``config`` itself, after checking that it is a :class:`TrainConfig`.

    A ``TrainConfig`` applies its presets and checks every field when it is
    constructed; nothing is left to resolve. This function remains for code
    written when that was a separate step.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}.")
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON file of ``field = value`` pairs.

    Returns the pairs as a dict of :class:`TrainConfig` field names (dashes in
    keys are read as underscores); :func:`config_from_dict` builds the config,
    which checks the values.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file does not parse, is not a table, has a key that is
        no field, or names a field twice (``num-steps`` and ``num_steps``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    kind = "TOML" if path.suffix == ".toml" else "JSON"
    try:
        text = path.read_text()
        data = tomllib.loads(text) if kind == "TOML" else json.loads(text, object_pairs_hook=_Pairs)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"could not parse {path} as {kind}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(
            f"{path} must hold a table/object of config fields; got {type(data).__name__}."
        )
    values: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for key, value in data.pairs if isinstance(data, _Pairs) else data.items():
        name = str(key).replace("-", "_")
        if name in keys:
            raise ValueError(
                f"{path}: {keys[name]!r} and {key!r} both set the field {name}; keep one."
            )
        keys[name], values[name] = str(key), value
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"{path}: unknown config field(s) {unknown}; valid fields: {list(FIELDS)}."
        )
    return values


class _Pairs(dict):
    """A JSON object that remembers its pairs, repeated keys included."""

    def __init__(self, pairs: list[tuple[str, Any]]):
        super().__init__(pairs)
        self.pairs = pairs


def config_from_dict(values: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: none: every other field takes its default) with ``values`` applied.

    Raises:
      ConfigValueError: a key is no field, or a value is bad.
      ConfigTypeError: a value has the wrong type.
    """
    _check_known(values)
    return TrainConfig(**values) if base is None else base.replace(**values)


def _check_known(values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigValueError(
            "unknown config field(s) {unknown}; valid fields: {valid}.",
            unknown=unknown,
            valid=list(FIELDS),
        )


# --- checks ---------------------------------------------------------------------------------


def _resolve(values: dict[str, Any]) -> dict[str, Any]:
    """Check the given values, fill presets, check the result; returns every field's value."""
    for name in ("algorithm", "dataset"):
        values[name] = _typed(FIELDS[name], values[name])
    _check_names(values["algorithm"], values["dataset"])
    regression = values["dataset"] == SINUSOID
    for field in FIELDS.values():
        if regression and field.setting.images_only and values[field.name] != field.default:
            raise ConfigValueError("{0} does not apply to sinusoid regression.", [field.name])
    given = {k: _typed(FIELDS[k], v) for k, v in values.items() if v is not None}
    values = {**values, **given}
    record = ALGORITHMS[values["algorithm"]]
    if values["meta_lr_schedule"] is None:
        values["meta_lr_schedule"] = record.meta_lr_schedule
    if not regression:
        presets = record.presets
        key = values["dataset"] if values["dataset"] in presets else IMAGES
        for name, value in presets.get(key, {}).items():
            if values[name] is None:
                values[name] = value
    for name, value in preset_for(values["dataset"]).items():
        if values[name] is None:
            values[name] = value
    for field in FIELDS.values():
        if values[field.name] is None and field.setting.same_as is not None:
            values[field.name] = values[field.setting.same_as]
    for field in FIELDS.values():
        values[field.name] = _typed(field, values[field.name])
        _check_range(field, values[field.name])
    _check_together(values)
    return values


def _typed(field: Field, value: Any) -> Any:
    """``value`` as the field's type (tuples from lists, ``str`` from paths), or a type error."""
    name = field.name
    if value is None and field.optional:
        return value
    if field.kind is tuple:
        if is_integer(value):
            value = (value,)
        if not isinstance(value, list | tuple) or not value or not all(map(is_integer, value)):
            raise _type_error(name, "one or more integers", value)
        return tuple(int(v) for v in value)
    if field.kind is int:
        if not is_integer(value):
            raise _type_error(name, "an integer", value)
        return int(value)
    if field.kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _type_error(name, "a number", value)
        return float(value)
    if field.kind is bool:
        if not isinstance(value, bool | np.bool_):
            raise _type_error(name, "true or false", value)
        return bool(value)
    if isinstance(value, os.PathLike) and name.endswith("_dir"):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise _type_error(name, "a string", value)
    return value


def _type_error(name: str, expected: str, value: Any) -> ConfigError:
    if expected == "one or more integers" and isinstance(value, list | tuple) and not value:
        return ConfigValueError(
            "{0} must be one or more integers; got {value}.", [name], value=repr(value)
        )
    return ConfigTypeError(
        "{0} must be {expected}; got {value}.", [name], expected=expected, value=repr(value)
    )


def _check_range(field: Field, value: Any) -> None:
    s, name = field.setting, field.name
    if value is None:
        return
    if field.kind is float:
        if not (math.isfinite(value) and value > 0):
            raise ConfigValueError(
                "{0} must be a finite number > 0; got {value}.", [name], value=value
            )
        if not _FLOAT32_TINY <= value <= _FLOAT32_MAX:
            raise ConfigValueError(
                "{0} must lie between 1.4e-45 and 3.4e+38 to be a float32; got {value}.",
                [name], value=value,
            )  # fmt: skip
        return
    for v in value if isinstance(value, tuple) else (value,):
        if s.low is not None and v < s.low:
            raise ConfigValueError(
                "{0} must be >= {low}{why}; got {value}.", [name],
                low=s.low, why=" " + s.low_why if s.low_why else "", value=v,
            )  # fmt: skip
        if s.high is not None and v > s.high:
            raise ConfigValueError(
                "{0} must be <= {high} ({why}); got {value}.", [name],
                high=s.high, why=s.why, value=v,
            )  # fmt: skip
    choices = field.choices()
    if choices is not None and name != "algorithm" and value not in choices:
        raise ConfigValueError(
            "{0} must be one of {choices}; got {value}.", [name],
            choices=list(choices), value=repr(value),
        )  # fmt: skip


def _check_names(algorithm: str, dataset: str) -> None:
    if algorithm not in ALGORITHMS:
        raise ConfigValueError(
            "{0}: unknown algorithm {value}; expected one of {known}.",
            ["algorithm"], value=repr(algorithm), known=sorted(ALGORITHMS),
        )  # fmt: skip
    known = [SINUSOID, *DATASETS]
    if not (dataset in known or (dataset.startswith("tfds:") and len(dataset) > 5)):
        raise ConfigValueError(
            "{0}: unknown data set {value}; expected one of {known}.",
            ["dataset"], value=repr(dataset), known=[*known, "tfds:NAME"],
        )  # fmt: skip


def _check_together(c: dict[str, Any]) -> None:
    """Checks that involve several fields."""
    regression = c["dataset"] == SINUSOID
    if regression and c["model"] != "mlp":
        raise ConfigValueError(
            "{0} {value} takes images; sinusoid regression needs mlp.", ["model"],
            value=c["model"],
        )  # fmt: skip
    if not regression and c["model"] == "mlp":
        raise ConfigValueError(
            "{0} mlp takes vectors; {data} needs conv4 or resnet12.", ["model"],
            data=c["dataset"],
        )  # fmt: skip
    record = ALGORITHMS[c["algorithm"]]
    if regression and record.embedding:
        raise ConfigValueError(
            "{0} {value} classifies by comparing embeddings; it needs an image data "
            "set, not sinusoid regression.", ["algorithm"], value=c["algorithm"],
        )  # fmt: skip
    if not regression and record.extra_inputs:
        raise ConfigValueError(
            "{0} {value} feeds its context to an MLP's input; the trainer runs it on "
            "sinusoid regression only.", ["algorithm"], value=c["algorithm"],
        )  # fmt: skip
    for name in ("eval_interval", "checkpoint_interval"):
        if c[name] % c["steps_per_call"]:
            raise ConfigValueError(
                "{0} ({value}) must be a multiple of {1} ({spc}): checks happen between "
                "compiled calls.", [name, "steps_per_call"],
                value=c[name], spc=c["steps_per_call"],
            )  # fmt: skip
    if c["seeds"] is not None:
        _check_seeds(c)
    if (c["keep_best"] or c["early_stop"]) and not (
        c["eval_interval"] and c["val_split"] != NO_SPLIT
    ):
        name = "keep_best" if c["keep_best"] else "early_stop"
        raise ConfigValueError(
            "{0} needs validation: set {1} > 0 and a {2} other than 'none'.",
            [name, "eval_interval", "val_split"],
        )  # fmt: skip
    if regression:
        return
    if c["test_ways"] > c["ways"] and not record.embedding:
        raise ConfigValueError(
            "{0} ({value}) is larger than {1} ({ways}): {algo} classifies with a head of "
            "{ways} outputs, one per class of a training task; test with at most {ways} ways, "
            "or train with more.", ["test_ways", "ways"],
            value=c["test_ways"], ways=c["ways"], algo=c["algorithm"],
        )  # fmt: skip
    splits = DATASETS.get(c["dataset"])
    for name in ("train_split", "val_split", "test_split"):
        value = c[name]
        if value == NO_SPLIT and name != "val_split":
            raise ConfigValueError("{0} cannot be 'none'.", [name])
        if splits is not None and value != NO_SPLIT and value not in splits:
            raise ConfigValueError(
                "{0}: {data} has no split {value}; its splits are {splits}.", [name],
                data=c["dataset"], value=repr(value), splits=list(splits),
            )  # fmt: skip


def _check_seeds(c: dict[str, Any]) -> None:
    """``seeds``: distinct, not with ``seed``, nor with what stops or keeps one run by score."""
    seeds = c["seeds"]
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ConfigValueError(
            "{0} lists seed {twice} more than once; each seed is one run.", ["seeds"],
            twice=" and ".join(map(str, twice)),
        )  # fmt: skip
    if c["seed"] != 0:
        raise ConfigValueError(
            "{0} and {1} contradict each other: {1} trains each seed it lists; drop {0} "
            "({seed}) or put it in {1}.", ["seed", "seeds"], seed=c["seed"],
        )  # fmt: skip
    for name in ("keep_best", "early_stop"):
        if c[name]:
            raise ConfigValueError(
                "{0} is not supported with {1}: the seeds would keep or stop at different "
                "steps; drop one of them.", [name, "seeds"],
            )  # fmt: skip


def _attributes() -> str:
    lines = ["", "    Attributes:"]
    for field in FIELDS.values():
        text = field.setting.help
        if "default" not in text:
            text += f" ({default_text(field)})"
        lines.append(f"      {field.name}: {text}.")
    return "\n".join(lines) + "\n"


TrainConfig.__doc__ = (TrainConfig.__doc__ or "") + _attributes()
