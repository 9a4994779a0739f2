"""The ``jmeta`` command: ``jmeta train`` and ``jmeta eval``, a thin layer over :mod:`jmeta.train`.

Every ``train`` flag is a :class:`~jmeta.train.TrainConfig` field. Values come,
later ones winning, from: the data set's defaults, the saved run (with
``--resume``), ``--config FILE`` (TOML or JSON), then the flags given.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_USAGE = 2
EXIT_DIVERGED = 1

# Flag help, in the order shown. (field, help, argparse options)
_TRAIN_FLAGS: tuple[tuple[str, str, dict], ...] = (
    ("algorithm", "meta-learning algorithm", {}),
    ("dataset", "sinusoid, omniglot, mini_imagenet, cifar_fs, fc100 or tfds:NAME", {}),
    ("data_dir", ("folder holding the data set's files (default: the loader's; for omniglot "
                  "$JMETA_OMNIGLOT_DIR or the cache folder)"), {}),
    ("train_split", "training split", {}),
    ("val_split", "validation split ('none': no validation)", {}),
    ("test_split", "test split", {}),
    ("image_size", "side of the square images, in pixels (default: the data set's own)",
     {"type": int}),
    ("rotations", "add 90/180/270-degree rotations of training classes as classes",
     {"action": argparse.BooleanOptionalAction}),
    ("augment", "random crop and flip of training images",
     {"action": argparse.BooleanOptionalAction}),
    ("ways", "classes per task (N)", {"type": int}),
    ("shots", "support examples per class (K); support points for sinusoid", {"type": int}),
    ("queries", "query examples per class; query points for sinusoid", {"type": int}),
    ("test_queries", "queries per class in validation and test tasks (default: --queries)",
     {"type": int}),
    ("meta_batch_size", "tasks per meta-step", {"type": int}),
    ("inner_steps", "inner-loop steps during meta-training", {"type": int}),
    ("inner_lr", "inner-loop step size during meta-training", {"type": float}),
    ("test_inner_steps", ("inner steps at test time; several values score the test set once "
                          "each, validation uses the first"), {"type": int, "nargs": "+"}),
    ("test_inner_lr", "inner step size at test time (default: --inner-lr)", {"type": float}),
    ("first_order", "first-order meta-gradient (no second derivatives)",
     {"action": argparse.BooleanOptionalAction}),
    ("meta_optimizer", "outer optimizer", {"choices": ("adam", "sgd")}),
    ("meta_lr", "outer learning rate", {"type": float}),
    ("num_steps", "meta-steps to train for", {"type": int}),
    ("steps_per_call", "meta-steps per compiled call (intervals must be multiples of it)",
     {"type": int}),
    ("eval_interval", "validate every this many meta-steps (0: never)", {"type": int}),
    ("val_tasks", "tasks per validation", {"type": int}),
    ("eval_tasks", "fixed test tasks", {"type": int}),
    ("eval_seed", "names the fixed test task set", {"type": int}),
    ("seed", "initialisation and training tasks", {"type": int}),
    ("model", "network", {"choices": ("mlp", "conv4", "resnet12")}),
    ("width", "hidden units (mlp) or filters (conv4; first stage of resnet12)", {"type": int}),
    ("batch_norm", "batch-norm statistics from", {"choices": ("transductive", "support", "none")}),
    ("conv_impl", "how convolutions are computed (auto: the fastest measured on the backend, "
     "adaptive on CPU, im2col on GPU)", {"choices": ("auto", "adaptive", "xla", "im2col")}),
    ("output_dir", "folder for the run's files (default: runs/<dataset>-<algo>-<time>)", {}),
    ("checkpoint_interval", "checkpoint every this many meta-steps (0: only at the end)",
     {"type": int}),
    ("keep_checkpoints", "recent checkpoints to keep", {"type": int}),
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jmeta`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    return args.handler(args)


def build_parser() -> argparse.ArgumentParser:
    """The ``jmeta`` argument parser (``train`` and ``eval`` subcommands)."""
    from jmeta import __version__

    parser = argparse.ArgumentParser(
        prog="jmeta",
        description="Meta-learning as pure, compiled JAX functions. "
        "`jmeta train` with no arguments runs MAML on sinusoid regression (about a minute "
        "on a CPU); see docs/training.md.",
    )
    parser.add_argument("--version", action="version", version=f"jmeta {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{train,eval}")
    train = commands.add_parser(
        "train",
        help="meta-train, validate, checkpoint and test",
        description="Meta-train a model and score it on fixed test tasks. Defaults depend "
        "on --dataset (shown per data set); flags override --config FILE, which overrides the "
        "defaults.",
    )
    _add_train_flags(train)
    train.set_defaults(handler=functools.partial(_train, parser=train))
    evaluate = commands.add_parser(
        "eval",
        help="score a checkpoint on fixed test tasks",
        description="Score a saved run's checkpoint on its fixed test tasks (600 by default, "
        "the tasks the run was tested on), mean and 95%% confidence interval.",
    )
    evaluate.add_argument("--checkpoint", required=True, type=Path, metavar="DIR",
                          help="a run folder (newest checkpoint), or one checkpoints/<step> folder")  # fmt: skip
    evaluate.add_argument("--split", choices=("test", "val"), default="test")
    evaluate.add_argument("--tasks", type=int, help="number of tasks (default: the run's, 600)")
    evaluate.add_argument("--seed", type=int, help="task-set seed (default: the run's)")
    evaluate.add_argument("--inner-steps", type=int, nargs="+",
                          help="test-time inner steps (default: the run's)")  # fmt: skip
    evaluate.add_argument("--data-dir", help="where the data are, if they moved")
    evaluate.add_argument("--json", type=Path, metavar="FILE", help="also write scores as JSON")
    evaluate.set_defaults(handler=functools.partial(_eval, parser=evaluate))
    return parser


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    from jmeta.train import ALGORITHMS, PRESETS, TrainConfig

    defaults = TrainConfig()
    for field, text, options in _TRAIN_FLAGS:
        flags = ["--" + field.replace("_", "-")]
        if field == "algorithm":
            flags = ["--algo", "--algorithm"]
            options = {"choices": sorted(ALGORITHMS)}
        default = getattr(defaults, field)
        if "default" not in text:
            shown = _preset_help(field, PRESETS) if default is None else f"default: {default}"
            text = f"{text} ({shown})"
        parser.add_argument(*flags, dest=field, default=argparse.SUPPRESS, help=text, **options)
    run = parser.add_argument_group("run")
    run.add_argument("--config", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                     help="TOML or JSON file of config fields (flags override it)")  # fmt: skip
    run.add_argument("--resume", action="store_true", default=argparse.SUPPRESS,
                     help="continue the run in --output-dir from its newest checkpoint")  # fmt: skip
    run.add_argument("--overwrite", action="store_true", default=argparse.SUPPRESS,
                     help="replace the run files in an existing --output-dir")  # fmt: skip
    run.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS,
                     help="no progress bar")  # fmt: skip


def _preset_help(field: str, presets: dict) -> str:
    values: dict[str, list[str]] = {}
    for name, preset in presets.items():
        if field in preset:
            value = preset[field]
            value = " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
            values.setdefault(value, []).append("other image data" if name == "images" else name)
    if not values:
        return "default: none"
    return "default: " + "; ".join(f"{v} for {'/'.join(names)}" for v, names in values.items())


def _train(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    from jmeta.train import TrainingDiverged, config_from_dict, load_config, saved_config
    from jmeta.train.loop import run, setup

    options = vars(args)
    resume = options.pop("resume", False)
    overwrite = options.pop("overwrite", False)
    progress = not options.pop("no_progress", False)
    config_file = options.pop("config", None)
    flags = {k: v for k, v in options.items() if k not in ("command", "handler")}
    if "test_inner_steps" in flags:
        flags["test_inner_steps"] = tuple(flags["test_inner_steps"])
    try:
        base = None
        if resume:
            if "output_dir" not in flags:
                parser.error("--resume needs --output-dir: the folder of the run to continue.")
            base = saved_config(flags["output_dir"])
        if config_file is not None:
            base = config_from_dict(load_config(config_file), base)
        prepared = setup(config_from_dict(flags, base), resume=resume, overwrite=overwrite)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        parser.error(str(err))
    try:
        result = run(prepared, progress=progress)
    except TrainingDiverged as err:
        print(f"jmeta train: stopped: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    print(result.summary())
    return 0


def _eval(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    from jmeta.train import evaluate_checkpoint, saved_config
    from jmeta.train.results import format_scores, scores_to_json
    from jmeta.train.scoring import find_run

    try:
        config = saved_config(find_run(args.checkpoint)[0])
        scores, step = evaluate_checkpoint(
            args.checkpoint,
            split=args.split,
            num_tasks=args.tasks,
            seed=args.seed,
            inner_steps=args.inner_steps,
            data_dir=args.data_dir,
        )
    except (ValueError, TypeError, FileNotFoundError) as err:
        parser.error(str(err))
    tasks = args.tasks or config.eval_tasks
    seed = config.eval_seed if args.seed is None else args.seed
    header = (
        f"{config.algorithm} checkpoint at step {step}, {args.split} split: {tasks} fixed tasks "
        f"(seed {seed}), mean ± 95% confidence interval"
    )
    print(format_scores(scores, regression=config.is_regression, header=header))
    if args.json is not None:
        args.json.write_text(json.dumps({"step": step, "scores": scores_to_json(scores)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
