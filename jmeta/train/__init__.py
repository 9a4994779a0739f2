"""Meta-training as a library call, with the ``jmeta`` command line as a thin layer on top.

MAML on sinusoid regression (the defaults), first-order MAML on Omniglot, and predictions
for your own images from a finished run (skipped when the examples run: each needs a full
training run or files of your own):

>>> from jmeta.train import TrainConfig, predict, train
>>> result = train(TrainConfig())  # doctest: +SKIP
>>> print(result.summary())  # doctest: +SKIP
>>> out = predict("runs/x", "my_classes", ["new.png"])  # doctest: +SKIP
>>> result = train(TrainConfig(dataset="omniglot", data_dir="../shared/data/omniglot",
...                            algorithm="fomaml", num_steps=2000))  # doctest: +SKIP

See ``docs/training.md``.
"""

from jmeta.train.algorithms import ALGORITHMS, Algorithm, LearnerSpec, register_algorithm
from jmeta.train.checkpoint import (
    CheckpointDamaged,
    CheckpointMismatch,
    Checkpoints,
    CheckpointWarning,
)
from jmeta.train.config import (
    PRESETS,
    ConfigError,
    ConfigTypeError,
    ConfigValueError,
    TrainConfig,
    config_from_dict,
    load_config,
    resolve_config,
)
from jmeta.train.lock import RunFolderBusy, WriteError
from jmeta.train.logs import read_metrics
from jmeta.train.loop import TrainingDiverged, TrainResult, train
from jmeta.train.outputs import saved_config
from jmeta.train.prediction import InputError, InputNotFound, InputValueError, Predictions, predict
from jmeta.train.scoring import evaluate_checkpoint
from jmeta.train.seeds import SeedDiverged, SeedResults, Spread

__all__ = [
    "ALGORITHMS",
    "PRESETS",
    "Algorithm",
    "CheckpointDamaged",
    "CheckpointMismatch",
    "CheckpointWarning",
    "Checkpoints",
    "ConfigError",
    "ConfigTypeError",
    "ConfigValueError",
    "InputError",
    "InputNotFound",
    "InputValueError",
    "LearnerSpec",
    "Predictions",
    "RunFolderBusy",
    "SeedDiverged",
    "SeedResults",
    "Spread",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "WriteError",
    "config_from_dict",
    "evaluate_checkpoint",
    "load_config",
    "predict",
    "read_metrics",
    "register_algorithm",
    "resolve_config",
    "saved_config",
    "train",
]
