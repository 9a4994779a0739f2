"""MAML against MAML++ at the same small CPU budget and the same seeds: validation curves.

A small-budget CPU comparison, not convergence: each learner trains ``--steps``
meta-steps of 5-way 1-shot minimal Omniglot from each seed, with the same
tasks per step, inner steps and inner step size (5 steps of 0.1, MAML++'s
Omniglot setting; MAML with 5 steps is where the paper saw its instability),
and is validated every ``--eval-interval`` steps on the same fixed tasks of
``minimal-val``. MAML++ keeps its other defaults (LSLR, per-step batch-norm
weights, the multi-step loss, which stays at uniform weights in the first
500-step epoch, and the cosine meta-learning rate over ``--steps``). The
report gives, per learner and validation step, the mean and the spread
(standard deviation and range) of validation accuracy across seeds, the
largest drop between consecutive validations of any seed, the final test
accuracy on ``--test-tasks`` fixed tasks of ``minimal-test``, and the machine,
date and load average: ``benchmarks/results/mamlpp_stability_<machine>_<date>.{json,md}``.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/mamlpp_stability.py --seeds 0 1 2 --steps 200
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks import machine

REPO = Path(__file__).resolve().parents[1]
LEARNERS = ("maml", "mamlpp")


def config_for(algorithm: str, seed: int, args: argparse.Namespace, out: Path):
    from jmeta.train import TrainConfig

    return TrainConfig(
        algorithm=algorithm, dataset="omniglot", data_dir=args.data_dir, ways=5, shots=1,
        inner_steps=5, inner_lr=0.1, test_inner_steps=(5,), meta_batch_size=args.tasks,
        num_steps=args.steps, steps_per_call=args.eval_interval, eval_interval=args.eval_interval,
        checkpoint_interval=args.steps, val_tasks=args.val_tasks, eval_tasks=args.test_tasks,
        seed=seed, output_dir=str(out),
    )  # fmt: skip


def summarise(curves: dict[int, dict[int, float]]) -> dict[str, object]:
    """Across seeds: per validation step the mean, standard deviation and range; the largest
    drop between consecutive validations of one seed."""
    steps = sorted(set.intersection(*(set(c) for c in curves.values())))
    table = []
    for step in steps:
        values = np.array([c[step] for c in curves.values()])
        table.append({"step": step, "mean": float(values.mean()), "std": float(values.std()),
                      "min": float(values.min()), "max": float(values.max())})  # fmt: skip
    drops = [
        max([c[a] - c[b] for a, b in zip(steps, steps[1:], strict=False)] + [0.0])
        for c in curves.values()
    ]
    return {"per_step": table, "largest_drop": float(max(drops))}


def markdown(report: dict) -> str:
    lines = [
        "# MAML and MAML++ at the same small CPU budget",
        "",
        f"A small-budget CPU comparison, not convergence: {report['steps']} meta-steps of "
        f"{report['tasks']} tasks (5-way 1-shot minimal Omniglot, 5 inner steps of 0.1, 5 at "
        f"test) from seeds {', '.join(map(str, report['seeds']))}; validation accuracy on "
        f"{report['val_tasks']} fixed `minimal-val` tasks every {report['eval_interval']} steps, "
        f"mean ± standard deviation across seeds [min, max]. {report['machine']}; "
        f"1-minute load average {report['load_before']:.1f} at the start, "
        f"{report['load_after']:.1f} at the end; run at `nice -n 10` beside other work.",
        "",
        "| step | " + " | ".join(report["learners"]) + " |",
        "| ---: | " + " | ".join("---:" for _ in report["learners"]) + " |",
    ]
    by_step: dict[int, list[str]] = {}
    for name in report["learners"]:
        for row in report["learners"][name]["per_step"]:
            by_step.setdefault(row["step"], []).append(
                f"{100 * row['mean']:.1f}% ± {100 * row['std']:.1f} "
                f"[{100 * row['min']:.1f}, {100 * row['max']:.1f}]"
            )
    lines += [f"| {step} | " + " | ".join(cells) + " |" for step, cells in sorted(by_step.items())]
    lines += ["", "| learner | largest drop between validations (any seed) | final test "
              "accuracy per seed | wall time per run |", "| --- | ---: | --- | ---: |"]  # fmt: skip
    for name, result in report["learners"].items():
        tests = ", ".join(f"{100 * t:.1f}%" for t in result["test"])
        minutes = np.mean(result["seconds"]) / 60
        lines.append(
            f"| {name} | {100 * result['largest_drop']:.1f} points | {tests} "
            f"({report['test_tasks']} `minimal-test` tasks each) | {minutes:.0f} min |"
        )
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=LEARNERS)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=4, help="tasks per meta-step")
    parser.add_argument("--eval-interval", type=int, default=25)
    parser.add_argument("--val-tasks", type=int, default=100)
    parser.add_argument("--test-tasks", type=int, default=200)
    parser.add_argument("--data-dir", default="../shared/data/omniglot")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/mamlpp_stability"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    os.chdir(REPO)
    import jax

    from jmeta.train import read_metrics, train

    load_before = os.getloadavg()[0]
    report: dict = {"learners": {}}
    for name in args.learners:
        curves, tests, seconds = {}, [], []
        for seed in args.seeds:
            out = args.runs_dir / f"{name}-seed{seed}"
            started = time.perf_counter()
            with jax.numpy_dtype_promotion("standard"):
                result = train(config_for(name, seed, args, out), overwrite=True, progress=False)
            seconds.append(time.perf_counter() - started)
            records = read_metrics(out / "metrics.jsonl")
            curves[seed] = {r["step"]: r["accuracy"] for r in records if r["split"] == "val"}
            tests.append(float(result.test[5]["accuracy"].mean))
            print(f"{name} seed {seed}: test {100 * tests[-1]:.1f}%", flush=True)
        report["learners"][name] = {**summarise(curves), "test": tests, "seconds": seconds,
                                    "curves": {str(s): c for s, c in curves.items()}}  # fmt: skip
    report.update(
        seeds=args.seeds, steps=args.steps, tasks=args.tasks, eval_interval=args.eval_interval,
        val_tasks=args.val_tasks, test_tasks=args.test_tasks, machine=machine.describe(()),
        date=datetime.date.today().isoformat(), load_before=load_before,
        load_after=os.getloadavg()[0], commit=machine.git_commit(),
        command="PYTHONPATH=$PWD nice -n 10 python benchmarks/mamlpp_stability.py --seeds "
        + " ".join(map(str, args.seeds)) + f" --steps {args.steps} --tasks {args.tasks} "
        f"--eval-interval {args.eval_interval} --val-tasks {args.val_tasks} --test-tasks "
        f"{args.test_tasks} --learners " + " ".join(args.learners),
    )  # fmt: skip
    stem = args.out / machine.result_stem("mamlpp_stability")
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
