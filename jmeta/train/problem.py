"""From a resolved config to what the loop needs: samplers, data on device, model, loss.

Each split is a :class:`Split`: a per-task sampler ``(key, data) -> Task`` and
the ``data`` it reads (the split's uint8 images, placed on the device once, or
``()`` for sinusoid). The data travel as an argument of the compiled
functions, never as a closed-over constant.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

import jax

import jmeta
from jmeta import models
from jmeta.algorithms.baseline import pretraining_batch
from jmeta.tasks.augment import crop_and_flip, random_affine
from jmeta.train.algorithms import ALGORITHMS
from jmeta.train.config import NO_SPLIT, ConfigValueError, TrainConfig
from jmeta.types import Array, LossFn, Model, PRNGKey, Task


class Split(NamedTuple):
    """One split's task sampler and data.

    Attributes:
      name: the split's name in the data set (``"minimal-test"``).
      sample: ``(key, data) -> Task``, pure.
      data: a pytree of arrays (the images, on device) or ``()``.
      num_classes: classes of the split (``None`` for regression).
    """

    name: str
    sample: Callable[[PRNGKey, Any], Task]
    data: Any
    num_classes: int | None


class Problem(NamedTuple):
    """The data side of a run: splits (``None``: not loaded, or none), loss, metrics, model."""

    train: Split | None
    val: Split | None
    test: Split | None
    model: Model
    loss_fn: LossFn
    metrics: Mapping[str, LossFn]
    image_shape: tuple[int, ...] | None
    train_classes: int | None = None


def build_problem(
    config: TrainConfig, *, splits: tuple[str, ...] = ("train", "val", "test")
) -> Problem:
    """Load the data set (the ``splits`` asked for), check it can give the tasks, build the model.

    Raises:
      ValueError: a split has too few classes or examples for the tasks asked
        for; the message names the split.
    """
    if config.is_regression:
        return _sinusoid_problem(config)
    assert config.ways is not None  # set for every image data set
    loaded = {
        role: _load_split(config, role) for role in splits if _split_name(config, role) != NO_SPLIT
    }
    shapes = {split.images.shape[2:] for split in loaded.values()}
    if len(shapes) != 1:
        raise ValueError(
            f"splits of {config.dataset} have different image shapes: {sorted(shapes)}."
        )
    (image_shape,) = shapes
    out = {}
    for role, split in loaded.items():
        training = role == "train"
        rotations = bool(config.rotations if training else config.eval_rotations)
        queries = config.queries if training else config.test_queries
        ways = config.ways if training else config.test_ways
        assert ways is not None  # set for every image data set
        name = _split_name(config, role)
        source = f"the {role} split {name!r} of {config.dataset}"
        _check_classes(config, training, split.images, rotations, source)
        jmeta.tasks.check_episode(
            split.images,
            ways=ways,
            shots=config.shots,
            queries=queries,
            rotations=rotations,
            source=source,
        )
        augment = _augment(config, image_shape) if training else None
        sample = functools.partial(
            _few_shot,
            ways=ways,
            shots=config.shots,
            queries=queries,
            rotations=rotations,
            augment=augment,
        )
        if training and ALGORITHMS[config.algorithm].pretraining:
            # As many images per task as an episode: half "support", half "query".
            half = -(-config.ways * (config.shots + queries) // 2)
            sample = functools.partial(
                _pretraining, batch_size=half, rotations=rotations, augment=augment
            )
        out[role] = Split(name, sample, jax.device_put(split.images), split.num_classes)
    return Problem(
        train=out.get("train"),
        val=out.get("val"),
        test=out.get("test"),
        model=build_model(config, tuple(int(d) for d in image_shape)),
        loss_fn=jmeta.losses.cross_entropy,
        metrics={"accuracy": jmeta.losses.accuracy},
        image_shape=tuple(int(d) for d in image_shape),
        train_classes=_train_classes(config, loaded.get("train")),
    )


def _check_classes(config: TrainConfig, training: bool, images, rotations: bool, source: str):
    """Refuse more ways than the split has classes, naming the field that asks for them.

    Validation and test tasks take ``test_ways``; when it was not given it is
    ``ways``, which the message then names.
    """
    field = "ways"
    if not training and ("test_ways" in config.given or config.test_ways != config.ways):
        field = "test_ways"
    ways = getattr(config, field)
    classes = int(images.shape[0])
    available = 4 * classes if rotations else classes
    if ways > available:
        what = f"{classes} classes" + (f" ({available} with rotations)" if rotations else "")
        raise ConfigValueError(
            "{0}={ways} needs {ways} distinct classes, but {source} has {what}.", [field],
            ways=ways, source=source, what=what,
        )  # fmt: skip


def build_model(config: TrainConfig, image_shape: tuple[int, ...] | None) -> Model:
    """The network the config names, sized for its task and its algorithm's needs."""
    width = config.width
    algorithm = ALGORITHMS[config.algorithm]
    if config.model == "mlp":
        return models.mlp((1 + algorithm.extra_inputs, width, width, 1))
    if image_shape is None or len(image_shape) != 3:
        raise ValueError(f"{config.model} needs an image shape (H, W, C); got {image_shape}.")
    height, side, channels = image_shape
    num_classes = None if algorithm.embedding else config.ways
    batch_norm = cast(models.BatchNormMode, config.batch_norm)
    impl = conv_impl(config.conv_impl)
    if config.model == "conv4":
        return models.conv4(
            num_classes,
            channels=width,
            input_shape=(height, side, channels),
            batch_norm=batch_norm,
            conv_impl=impl,
        )
    return models.resnet12(
        num_classes,
        channels=(width, int(2.5 * width), 5 * width, 10 * width),
        input_shape=(height, side, channels),
        batch_norm=batch_norm,
        conv_impl=impl,
    )


def conv_impl(choice: str) -> models.ConvImpl:
    """The implementation ``choice`` names; ``"auto"``: the models' default
    (:data:`jmeta.models.DEFAULT_CONV_IMPL`, :data:`jmeta.models.DEFAULT_CONV_IMPL_REASON`)."""
    return models.DEFAULT_CONV_IMPL if choice == "auto" else cast(models.ConvImpl, choice)


def _augment(config: TrainConfig, image_shape: tuple[int, ...]):
    """The training images' augmentation the config asks for (``None``: none)."""
    steps = []
    if config.affine:
        steps.append(random_affine())
    if config.augment:
        steps.append(crop_and_flip(padding=max(1, image_shape[0] // 8)))
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def both(key: PRNGKey, images: Array) -> Array:
        for step, k in zip(steps, jax.random.split(key, len(steps)), strict=True):
            images = step(k, images)
        return images

    return both


def _train_classes(config: TrainConfig, split) -> int | None:
    """Classes of the training split, rotations included (``None``: not loaded)."""
    if split is None:
        return None
    return int(split.images.shape[0]) * (4 if config.rotations else 1)


def _pretraining(key: PRNGKey, data: Array, **options) -> Task:
    return pretraining_batch(key, data, **options)


def _few_shot(key: PRNGKey, data: Array, **options) -> Task:
    return jmeta.tasks.few_shot(key, data, **options)


def _sinusoid(key: PRNGKey, data: Any, *, num_support: int, num_query: int) -> Task:
    del data
    return jmeta.tasks.sinusoid(key, num_support=num_support, num_query=num_query)


def _sinusoid_problem(config: TrainConfig) -> Problem:
    def split(num_query: int) -> Split:
        sample = functools.partial(_sinusoid, num_support=config.shots, num_query=num_query)
        return Split("sinusoid", sample, (), None)

    held_out = split(config.test_queries)
    return Problem(
        train=split(config.queries),
        val=held_out,
        test=held_out,
        model=build_model(config, None),
        loss_fn=jmeta.losses.mse,
        metrics={},
        image_shape=None,
    )


def _split_name(config: TrainConfig, role: str) -> str:
    return getattr(config, f"{role}_split")


def _load_split(config: TrainConfig, role: str):
    from jmeta.datasets import load

    return load(
        config.dataset,
        _split_name(config, role),
        data_dir=config.data_dir,
        image_size=config.image_size,
    )
