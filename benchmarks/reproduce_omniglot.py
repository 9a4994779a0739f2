"""Every classification algorithm, 5-way and 20-way 1-shot, on the minimal-Omniglot split.

Trains each (algorithm, ways) with :func:`jmeta.train.train` (the library call
behind ``jmeta train``) on ``minimal-train`` with rotations as classes, then
scores it on 600 fixed tasks of the held-out alphabets (``minimal-test``:
Sanskrit and Tagalog) with a 95% confidence interval. Writes
``benchmarks/results/omniglot_accuracy.md`` and ``.json``: accuracy, the exact
``jmeta train`` command that reproduces each row, steps, wall time, machine.

The step counts fit a 2-core CPU (see the results file for what that costs);
they are far below the MAML paper's 60,000, and the table says so. A run whose
folder already holds a finished run is resumed (which re-scores its final
checkpoint) instead of trained again; ``--overwrite`` starts afresh.

    PYTHONPATH=$PWD python benchmarks/reproduce_omniglot.py            # the full table
    PYTHONPATH=$PWD python benchmarks/reproduce_omniglot.py --quick    # a few steps per run
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = "../shared/data/omniglot"  # relative to the repository root, as in the commands

#: What differs from the Omniglot defaults (jmeta.train.PRESETS["omniglot"]), per ways.
#: Conv4 with 64 filters, one query per class in training (as MAML); at test 15 queries per
#: class for 5-way, 5 for 20-way (100 per task: the 600-task test costs a quarter as much).
SETTINGS = {
    5: {"meta_batch_size": 16, "num_steps": 300, "inner_lr": 0.4, "test_inner_steps": (3,)},
    20: {
        "meta_batch_size": 8,
        "num_steps": 150,
        "inner_lr": 0.4,
        "test_inner_steps": (3,),
        "test_queries": 5,
    },
}
COMMON = {"eval_interval": 100, "checkpoint_interval": 100, "val_tasks": 100}
QUICK = {"num_steps": 4, "steps_per_call": 2, "eval_interval": 2, "checkpoint_interval": 2,
         "val_tasks": 10, "eval_tasks": 20, "meta_batch_size": 2}  # fmt: skip
ALGORITHMS = (
    "maml",
    "fomaml",
    "meta_sgd",
    "anil",
    "reptile",
    "imaml",
    "protonet",
    "matching_net",
    "r2d2",
)
#: What differs for one algorithm (Reptile takes several inner steps per task, as in its paper).
ALGORITHM_SETTINGS = {"reptile": {"inner_steps": 5, "inner_lr": 0.1, "test_inner_lr": 0.1}}
NAMES = {
    "maml": "MAML",
    "fomaml": "first-order MAML",
    "meta_sgd": "Meta-SGD",
    "anil": "ANIL",
    "reptile": "Reptile",
    "imaml": "iMAML",
    "protonet": "Prototypical Networks",
    "matching_net": "Matching Networks",
    "r2d2": "R2D2 (ridge head)",
}


def command(config) -> str:
    """The ``jmeta train`` command line that reproduces ``config``."""
    from jmeta.train import TrainConfig

    # The flags of every field whose value the command would not make without them: a field
    # derived from another (test_ways from ways) or from the algorithm's presets is checked
    # again once the fields it follows are set.
    want = config.to_dict()
    given = {name: want[name] for name in ("algorithm", "dataset", "data_dir")}
    while True:
        made = TrainConfig(**given).to_dict()
        differ = {k: v for k, v in want.items() if made[k] != v}
        if not differ:
            break
        given.update(differ)
    parts = ["jmeta", "train", "--algo", config.algorithm, "--dataset", config.dataset]
    parts += ["--data-dir", config.data_dir]
    for name, value in want.items():
        if name in ("algorithm", "dataset", "data_dir") or name not in given:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{name.replace('_', '-')}")
        elif isinstance(value, list):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps per run, small tests")
    parser.add_argument("--runs-dir", type=Path, default=None, help="where the runs go")
    parser.add_argument("--out", type=Path, default=None, help="results file (.md; .json beside)")
    parser.add_argument("--overwrite", action="store_true", help="train finished runs again")
    parser.add_argument("--only", nargs="+", default=None, help="e.g. maml-5 fomaml-20")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="only merge the rows of these .json results into --out, and stop",
    )
    args = parser.parse_args()
    os.chdir(REPO)  # the commands and data path are relative to the repository root

    from jmeta.train import TrainConfig, resolve_config, train

    tag = "omniglot_accuracy_quick" if args.quick else "omniglot_accuracy"
    runs_dir = args.runs_dir or Path("runs") / tag
    results = runs_dir if args.quick else Path("benchmarks/results")  # quick: not for committing
    out = args.out or results / f"{tag}.md"
    if args.merge:  # e.g. rows trained by two processes at once, each with its own --out
        rows = {(r["algorithm"], r["ways"]): r for r in _previous_rows(out)}
        for other in args.merge:
            rows.update({(r["algorithm"], r["ways"]): r for r in _previous_rows(other)})
        machine = json.loads(out.with_suffix(".json").read_text())["machine_at_start"]
        _write(out, list(rows.values()), machine, quick=args.quick)
        print(f"merged {len(rows)} rows into {out}")
        return
    machine_before = describe_machine()
    rows = _previous_rows(out)  # other rows of an earlier call survive a partial rerun
    for ways in SETTINGS:
        for algorithm in ALGORITHMS:
            if args.only and f"{algorithm}-{ways}" not in args.only:
                continue
            options = {
                **SETTINGS[ways],
                **ALGORITHM_SETTINGS.get(algorithm, {}),
                **COMMON,
                **(QUICK if args.quick else {}),
            }
            output_dir = runs_dir / f"{algorithm}-{ways}way"
            config = resolve_config(TrainConfig(
                algorithm=algorithm, dataset="omniglot", data_dir=DATA_DIR, ways=ways, shots=1,
                output_dir=str(output_dir), **options,
            ))  # fmt: skip
            resume = (output_dir / "config.json").exists() and not args.overwrite
            print(f"\n== {algorithm} {ways}-way 1-shot ({'resume' if resume else 'train'})")
            print(command(config), flush=True)
            started = time.perf_counter()
            result = train(config, resume=resume, overwrite=args.overwrite)
            print(result.summary(), flush=True)
            steps = result.config.test_inner_steps[0]
            scores = result.test[steps]
            sessions = json.loads((output_dir / "timings.json").read_text())["sessions"]
            first = [r for r in _records(output_dir) if r["split"] == "train"]
            rows = [r for r in rows if (r["algorithm"], r["ways"]) != (algorithm, ways)]
            rows.append(
                {
                    "algorithm": algorithm,
                    "ways": ways,
                    "shots": 1,
                    "accuracy": scores["accuracy"]._asdict(),
                    "accuracy_before": (
                        scores["accuracy_before"]._asdict() if "accuracy_before" in scores else None
                    ),
                    "test_inner_steps": steps if "accuracy_before" in scores else None,
                    "meta_steps": int(result.state.step),
                    "train_seconds": first[-1]["seconds"] if first else None,
                    "total_seconds": sessions[-1]["seconds"] if not resume else None,
                    "this_call_seconds": time.perf_counter() - started,
                    "command": command(result.config.replace(output_dir=str(output_dir))),
                    "config": result.config.replace(output_dir=str(output_dir)).to_dict(),
                }
            )
            _write(out, rows, machine_before, quick=args.quick)  # after every run
    print(f"\nwrote {out} and {out.with_suffix('.json')}")


def _order(row: dict) -> tuple[int, int]:
    return row["ways"], ALGORITHMS.index(row["algorithm"])


def _previous_rows(out: Path) -> list[dict]:
    path = out.with_suffix(".json")
    if not path.exists():
        return []
    return [r for r in json.loads(path.read_text())["runs"] if r["algorithm"] in ALGORITHMS]


def _write(out: Path, rows: list[dict], machine_before: str, *, quick: bool) -> None:
    rows = sorted(rows, key=_order)
    report = {"machine": describe_machine(), "machine_at_start": machine_before, "runs": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.write_text(markdown(report, quick=quick))


def describe_machine() -> str:
    from jmeta.train.machine import describe_machine as describe

    return describe()


def _records(output_dir: Path) -> list[dict]:
    from jmeta.train import read_metrics

    return read_metrics(output_dir / "metrics.jsonl")


def markdown(report: dict, *, quick: bool) -> str:
    lines = [
        "# Few-shot classification on minimal Omniglot" + (" (quick smoke run)" if quick else ""),
        "",
        "1-shot accuracy on 600 fixed test tasks of the held-out alphabets "
        "(`minimal-test`: Sanskrit, Tagalog), mean ± 95% confidence interval, after the "
        "test-time inner steps; trained on `minimal-train` (5 alphabets, 161 characters, "
        "rotations as classes: 644) and validated on `minimal-val` (Early_Aramaic). "
        "Every algorithm is scored on the same 600 tasks.",
        "",
        "| algorithm | ways | accuracy | before adaptation | test inner steps "
        "| test queries per class | meta-steps | train time | command |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in report["runs"]:
        acc, before = r["accuracy"], r["accuracy_before"]
        seconds = r["train_seconds"]
        steps = r["test_inner_steps"]
        MEAN = "mean"  # noqa: N806
        lines.append(
            f"| {NAMES[r['algorithm']]} | {r['ways']} | "
            f"{100 * acc['mean']:.1f}% ± {100 * acc['ci95']:.1f}% | "
            f"{'-' if before is None else f'{100 * before[MEAN]:.1f}%'} | "
            f"{'- (none)' if steps is None else steps} | "
            f"{r['config']['test_queries']} | {r['meta_steps']} | "
            f"{'-' if seconds is None else f'{seconds / 60:.1f} min'} | `{r['command']}` |"
        )
    done = {(r["algorithm"], r["ways"]) for r in report["runs"]}
    missing = [f"{a}-{w}" for w in SETTINGS for a in ALGORITHMS if (a, w) not in done]
    if missing:
        lines += [
            "",
            f"Not run yet (the machine's time ran out): {', '.join(missing)}; "
            f"`PYTHONPATH=$PWD python benchmarks/reproduce_omniglot.py --only {' '.join(missing)}` "
            "adds them.",
        ]
    lines += [
        "",
        f"Machine: {report['machine_at_start']} (at the start).",
        "",
        "Train time is the wall time of meta-training (compilation and validation included, "
        "the final test excluded) on that shared machine. Runs resumed from a finished run "
        "report their original training time.",
        "",
        "Settings (all runs): Conv4 with 64 filters and transductive batch norm, im2col "
        "convolutions, Adam 1e-3, one query per class in training (as in MAML's code), seed 0; "
        "5-way: 16 tasks per meta-step, 300 meta-steps; 20-way: 8 tasks, 150 meta-steps. "
        "Gradient-based learners: one inner SGD step of 0.4 in training and 3 at test "
        "(Reptile: 5 steps of 0.1). iMAML takes the same single inner step, far from the "
        "converged proximal solution its implicit gradient assumes (its paper uses many "
        "steps, which cost more than this budget). Prototypical Networks, Matching Networks "
        "and R2D2 embed "
        "with the same Conv4 without its head and have no inner loop. "
        "The MAML paper trains 60,000 meta-steps of 32 (5-way) or 16 (20-way) tasks on full "
        "Omniglot; these runs take a few hundred steps to fit a 2-core CPU, so they are "
        "below the papers' numbers (MAML: 98.7% and 95.8% on the Vinyals split) and compare "
        "the algorithms with each other at equal, small budgets, not with the papers.",
        "",
        "Reproduce the table: `PYTHONPATH=$PWD python benchmarks/reproduce_omniglot.py`; one row: "
        "its command, from the repository root.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
