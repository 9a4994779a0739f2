"""The ``jmeta`` command: ``train``, ``eval`` and ``predict``, a thin layer over :mod:`jmeta.train`.

Every ``train`` flag is a :class:`~jmeta.train.TrainConfig` field, generated from
the field's declaration (type, default or per-data-set preset, help). Values
come, later ones winning, from: the data set's defaults, the saved run (with
``--resume``), ``--config FILE`` (TOML or JSON), then the flags given. Errors
name the flag, or the file and key a value came from.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
#: A run stopped by a fault (divergence, a disk error) or a result that could not be written.
EXIT_STOPPED = 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jmeta`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    return args.handler(args)


def build_parser() -> argparse.ArgumentParser:
    """The ``jmeta`` argument parser (``train``, ``eval`` and ``predict`` subcommands)."""
    from jmeta import __version__

    parser = argparse.ArgumentParser(
        prog="jmeta",
        description="Meta-learning as pure, compiled JAX functions. "
        "`jmeta train` with no arguments runs MAML on sinusoid regression (about a minute "
        "on a CPU); see docs/training.md.",
    )
    parser.add_argument("--version", action="version", version=f"jmeta {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{train,eval,predict}")
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
        "the tasks the run was tested on), mean and 95% confidence interval.",
    )
    evaluate.add_argument(
        "--checkpoint", required=True, type=Path, metavar="DIR",
        help="a run folder (its best checkpoint if it kept one with --keep-best, else its "
        "newest), its checkpoints/ or best/ folder, or one checkpoints/<step> folder",
    )  # fmt: skip
    evaluate.add_argument("--split", choices=("test", "val"), default="test")
    evaluate.add_argument("--tasks", type=int, help="number of tasks (default: the run's, 600)")
    evaluate.add_argument("--seed", type=int, help="task-set seed (default: the run's)")
    evaluate.add_argument("--inner-steps", type=int, nargs="+",
                          help="test-time inner steps (default: the run's)")  # fmt: skip
    evaluate.add_argument("--ways", type=int, help="classes per task (default: the run's "
                          "--test-ways); a gradient-based learner's head allows at most its "
                          "training --ways")  # fmt: skip
    evaluate.add_argument("--data-dir", help="where the data are, if they moved")
    evaluate.add_argument("--run-seed", type=int, metavar="SEED",
                          help="score this seed of a run of several (--seeds; default: "
                          "each)")  # fmt: skip
    evaluate.add_argument("--json", type=Path, metavar="FILE", help="also write scores as JSON")
    evaluate.set_defaults(handler=functools.partial(_eval, parser=evaluate))
    _add_predict(commands)
    return parser


def _add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="classify your own images from a few labelled ones",
        description="Adapt a run's learner to the images in --support (one sub-folder per "
        "class, named for the class) and classify every --query image, converted as the run's "
        "training data were. See docs/training.md.",
    )
    predict.add_argument("--checkpoint", required=True, type=Path, metavar="RUN",
                         help="a run folder (newest checkpoint), or one checkpoints/<step> "
                         "folder")  # fmt: skip
    predict.add_argument("--support", required=True, type=Path, metavar="DIR",
                         help="a folder of class folders, each with one or more "
                         "images")  # fmt: skip
    predict.add_argument("--query", required=True, type=Path, nargs="+", metavar="PATH",
                         help="image files or folders of them (searched recursively)")  # fmt: skip
    predict.add_argument("--inner-steps", type=int,
                         help="inner steps of a gradient-based learner (default: the run's "
                         "first test-time value)")  # fmt: skip
    predict.add_argument("--skip-bad", action="store_true",
                         help="skip files that are not readable images (each is "
                         "named)")  # fmt: skip
    predict.add_argument("--run-seed", type=int, metavar="SEED",
                         help="which seed of a run of several (--seeds) to use")  # fmt: skip
    predict.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    predict.add_argument("--csv", type=Path, metavar="FILE", help="also write the rows as CSV")
    predict.set_defaults(handler=functools.partial(_predict, parser=predict))


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    from jmeta.train.config import FIELDS, default_text

    for field in FIELDS.values():
        options: dict[str, Any] = {}
        if field.kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif field.kind is tuple:
            options.update(type=int, nargs="+")
        elif field.kind in (int, float):
            options["type"] = field.kind
        if field.choices() is not None:
            options["choices"] = field.choices()
        text = field.setting.help
        if "default" not in text:
            text = f"{text} ({default_text(field, _flag)})"
        parser.add_argument(
            *_flags(field.name), dest=field.name, default=argparse.SUPPRESS, help=text, **options
        )
    run = parser.add_argument_group("run")
    run.add_argument("--config", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                     help="TOML or JSON file of config fields (flags override it)")  # fmt: skip
    run.add_argument(
        "--resume", action="store_true", default=argparse.SUPPRESS,
        help="continue the run in --output-dir from its newest checkpoint",
    )  # fmt: skip
    run.add_argument("--overwrite", action="store_true", default=argparse.SUPPRESS,
                     help="replace the run files in an existing --output-dir")  # fmt: skip
    run.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS,
                     help="no progress bar")  # fmt: skip


def _flags(field: str) -> tuple[str, ...]:
    from jmeta.train.config import FIELDS

    return FIELDS[field].setting.flags or ("--" + field.replace("_", "-"),)


def _flag(field: str) -> str:
    """How the command line spells a field: ``meta_batch_size`` -> ``--meta-batch-size``."""
    return _flags(field)[0]


class _Sources:
    """Where each field's value came from, to name it in an error as the user wrote it."""

    def __init__(self, flags: dict[str, Any], file: Path | None):
        self.flags, self.file = flags, file
        self.file_fields: set[str] = set()  # filled once the file is read

    def message(self, err: BaseException) -> str:
        """``err`` with fields named as flags, or as keys of the config file they came from."""
        from jmeta.train import ConfigError

        if not isinstance(err, ConfigError):
            return str(err)
        in_file = {f for f in err.fields if f in self.file_fields and f not in self.flags}
        text = err.render(lambda f: f if f in in_file else _flag(f))
        return f"{self.file}: {text}" if in_file else text


def _train(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    from jmeta.train import TrainingDiverged, config_from_dict, load_config, saved_config
    from jmeta.train.lock import RunFolderBusy
    from jmeta.train.loop import run, setup
    from jmeta.train.processes import initialize

    options = vars(args)
    resume = options.pop("resume", False)
    overwrite = options.pop("overwrite", False)
    progress = not options.pop("no_progress", False)
    config_file = options.pop("config", None)
    flags = {k: v for k, v in options.items() if k not in ("command", "handler")}
    if "seed" in flags and "seeds" in flags:
        parser.error("--seed and --seeds contradict each other: --seeds trains each seed it "
                     "lists; drop --seed or put it in --seeds.")  # fmt: skip
    sources = _Sources(flags, config_file)
    with _one_line_warnings("train"):
        try:
            base = None
            if resume:
                if "output_dir" not in flags:
                    parser.error("--resume needs --output-dir: the folder of the run to continue.")
                base = saved_config(flags["output_dir"])
            values = {}
            if config_file is not None:
                try:
                    values = load_config(config_file)
                except (ValueError, FileNotFoundError) as err:
                    parser.error(f"--config: {err}")
                sources.file_fields = set(values)
            config = config_from_dict({**values, **flags}, base)
            # Several processes: join them first, a timeout reported as one line.
            initialize(config, report=lambda err: f"jmeta train: error: {sources.message(err)}")
            prepared = setup(config, resume=resume, overwrite=overwrite)
        except (ValueError, TypeError, OSError, RunFolderBusy) as err:
            parser.error(sources.message(err))
        try:
            result = run(prepared, progress=progress)
        except TrainingDiverged as err:
            print(f"jmeta train: stopped: {err}", file=sys.stderr)
            return EXIT_STOPPED
        except OSError as err:  # a disk fault: read-only folder, full disk
            kept = prepared.checkpoints.steps()
            intact = (
                f"checkpoints {', '.join(map(str, kept))} in {prepared.checkpoints.directory} are "
                "as they were; --resume continues once this is fixed"
                if kept
                else "no checkpoint had been written"
            )
            print(f"jmeta train: stopped: {err}; {intact}.", file=sys.stderr)
            return EXIT_STOPPED
    print(result.summary())
    return 0


def _eval(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    from jmeta.train import evaluate_checkpoint, saved_config
    from jmeta.train.logs import write_json
    from jmeta.train.outputs import read_record
    from jmeta.train.results import format_scores, scores_to_json
    from jmeta.train.scoring import locate_checkpoint
    from jmeta.train.seeds import format_seed_scores, seeds_header

    if args.json is not None and not args.json.parent.is_dir():
        parser.error(f"--json {args.json}: no such folder {args.json.parent}")
    with _one_line_warnings("eval"):
        try:
            found = locate_checkpoint(args.checkpoint)
            config = saved_config(found.run_dir)
            diverged = {}
            each: Sequence[int | None] = (args.run_seed,)
            if config.seeds and args.run_seed is None:  # each seed, but those that diverged
                record = read_record(found.run_dir) or {}
                diverged = {int(k): v for k, v in (record.get("diverged_seeds") or {}).items()}
                each = [k for k in config.seeds if k not in diverged]
            scored = {
                run_seed: evaluate_checkpoint(
                    args.checkpoint,
                    split=args.split,
                    num_tasks=args.tasks,
                    seed=args.seed,
                    inner_steps=args.inner_steps,
                    data_dir=args.data_dir,
                    ways=args.ways,
                    run_seed=run_seed,
                )
                for run_seed in each
            }
        except (ValueError, TypeError, OSError) as err:
            parser.error(_eval_message(err))
    tasks = args.tasks or config.eval_tasks
    seed = config.eval_seed if args.seed is None else args.seed
    ways = "" if config.is_regression else f"{args.ways or config.test_ways}-way "
    which = "best checkpoint (by validation score)" if found.best else "checkpoint"
    step = max(step for _, step in scored.values())
    header = (
        f"{config.algorithm} {which} at step {step}, {args.split} split: {tasks} fixed {ways}tasks "
        f"(seed {seed}), mean ± 95% confidence interval"
    )
    if config.seeds and args.run_seed is None:
        per_seed = {k: v for k, (v, _) in scored.items() if k is not None}
        regression = config.is_regression
        table = format_seed_scores(
            per_seed, diverged, regression=regression, header=seeds_header(header)
        )
        print(table)
    else:
        ((scores, step),) = scored.values()
        print(format_scores(scores, regression=config.is_regression, header=header))
    if args.json is not None:
        if config.seeds and args.run_seed is None:
            out: dict[str, Any] = {"seeds": {str(k): {"step": at, "scores": scores_to_json(v)}
                                             for k, (v, at) in scored.items()}}  # fmt: skip
        else:
            out = {"scores": scores_to_json(scores)}
        try:
            write_json(args.json, {"step": step, "best": found.best, **out})
        except OSError as err:
            print(f"jmeta eval: error: {err} (the scores are printed above).", file=sys.stderr)
            return EXIT_STOPPED
    return 0


#: :func:`jmeta.train.predict.predict`'s arguments as ``jmeta predict``'s flags.
_PREDICT_FLAGS = {"run": "--checkpoint", "support": "--support", "queries": "--query",
                  "skip_bad": "--skip-bad", "inner_steps": "--inner-steps",
                  "run_seed": "--run-seed"}  # fmt: skip


def _predict(args: argparse.Namespace, *, parser: argparse.ArgumentParser) -> int:
    from jmeta.train import ConfigError, predict
    from jmeta.train.logs import write_json

    for flag, path in (("--json", args.json), ("--csv", args.csv)):
        if path is not None and not path.parent.is_dir():
            parser.error(f"{flag} {path}: no such folder {path.parent}")
    with _one_line_warnings("predict"):
        try:
            out = predict(args.checkpoint, args.support, args.query,
                          inner_steps=args.inner_steps, skip_bad=args.skip_bad,
                          run_seed=args.run_seed)  # fmt: skip
        except (ValueError, TypeError, OSError) as err:
            if isinstance(err, ConfigError):
                parser.error(err.render(lambda name: _PREDICT_FLAGS.get(name, name)))
            parser.error(str(err))
    for path, reason in out.skipped:
        print(f"jmeta predict: skipped {path}: {reason}", file=sys.stderr)
    print(out.table())
    try:
        if args.json is not None:
            write_json(args.json, out.to_json())
        if args.csv is not None:
            _write_text(args.csv, out.to_csv())
    except OSError as err:
        print(f"jmeta predict: error: {err} (the table is printed above).", file=sys.stderr)
        return EXIT_STOPPED
    return 0


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (temporary file, then rename); errors name ``path``."""
    import os

    from jmeta.train.lock import WriteError

    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise WriteError(path, err) from None


def _eval_message(err: BaseException) -> str:
    """``err`` naming ``jmeta eval``'s flags (``evaluate_checkpoint``'s arguments as flags)."""
    from jmeta.train import ConfigError
    from jmeta.train.config import FIELDS

    if not isinstance(err, ConfigError):
        return str(err)
    flags = {"num_tasks": "--tasks", "seed": "--seed", "inner_steps": "--inner-steps",
             "run_seed": "--run-seed"}  # fmt: skip
    return err.render(lambda f: flags.get(f) or (_flag(f) if f in FIELDS else f))


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Show jmeta's warnings (a damaged checkpoint skipped) as ``jmeta CMD: warning: ...``."""
    from jmeta.train.checkpoint import CheckpointWarning
    from jmeta.train.seeds import SeedDiverged

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"jmeta {command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", CheckpointWarning)
        warnings.simplefilter("always", SeedDiverged)
        warnings.showwarning = show
        yield


if __name__ == "__main__":
    sys.exit(main())
