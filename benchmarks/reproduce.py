"""Accuracy reproductions with the papers' settings, each with its 95% CI, seed and command.

Sinusoid regression (Finn et al. 2017, section 5.1; Li et al. 2017, section 4.1):
MAML, first-order MAML, Meta-SGD and Reptile, MLP 1-40-40-1, 10-shot tasks, 25
tasks per meta-step, Adam 1e-3, 70,000 meta-steps as in the MAML paper; the
test MSE on 600 fixed tasks after 1 and 10 inner steps, for two seeds.
Compare with Figure 3 of the MAML paper (10-shot panel) and Table 1 of the
Meta-SGD paper. Reptile (Nichol et al. 2018) uses its own inner loop (5 steps of
SGD here), and is scored like the others.

The classification reproductions on minimal Omniglot are in
:mod:`benchmarks.reproduce_omniglot`; this script runs them too with ``--omniglot``.

Writes ``benchmarks/results/reproduce_sinusoid.{md,json}``.

Usage: ``python -m benchmarks.reproduce [--quick] [--seeds 0 1 2] [--omniglot]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

# algorithm -> extra TrainConfig fields (everything else is the sinusoid preset)
SINUSOID_RUNS = {
    "maml": {},
    "fomaml": {},
    "meta_sgd": {},
    "reptile": {"inner_steps": 5, "inner_lr": 0.02},
}


def command(algorithm: str, fields: dict, num_steps: int, seed: int) -> str:
    flags = [f"--algo {algorithm}", f"--num-steps {num_steps}", f"--seed {seed}",
             "--test-inner-steps 1 10"]  # fmt: skip
    flags += [f"--{k.replace('_', '-')} {v}" for k, v in fields.items()]
    return "jmeta train " + " ".join(flags)


def run_sinusoid(seeds: list[int], num_steps: int, out_dir: Path, write) -> list[dict]:
    from jmeta.train import TrainConfig, train

    rows = []
    for seed in seeds:  # every algorithm once before the next seed
        for algorithm, fields in SINUSOID_RUNS.items():
            config = TrainConfig(
                algorithm=algorithm,
                num_steps=num_steps,
                seed=seed,
                test_inner_steps=(1, 10),
                output_dir=str(out_dir / f"{algorithm}-seed{seed}"),
                **fields,
            )
            start = time.time()
            result = train(config, overwrite=True, progress=False)
            rows.append({
                "algorithm": algorithm,
                "seed": seed,
                "num_steps": num_steps,
                "seconds": time.time() - start,
                "command": command(algorithm, fields, num_steps, seed),
                **{f"mse_{k}": [result.test[k]["loss"].mean, result.test[k]["loss"].ci95]
                   for k in (1, 10)},
                "mse_before": [result.test[1]["loss_before"].mean,
                               result.test[1]["loss_before"].ci95],
            })  # fmt: skip
            print(f"{algorithm} seed {seed}: {rows[-1]['mse_1']} {rows[-1]['mse_10']}", flush=True)
            write(rows)
    return rows


def _cell(mean: float, ci: float) -> str:
    """A table cell; a non-finite MSE (the adapted model blew up) says so."""
    return f"{mean:.3f} ± {ci:.3f}" if np.isfinite(mean) else "diverged (not finite)"


def _spread(values: np.ndarray) -> str:
    if not np.all(np.isfinite(values)):
        return "diverged (not finite)"
    if len(values) == 1:
        return f"{values.mean():.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def sinusoid_markdown(rows: list[dict], machine: str) -> str:
    lines = [
        "### Sinusoid regression (10-shot), test MSE on 600 fixed tasks",
        "",
        f"Machine: {machine}. Each cell: mean ± 95% CI over the 600 test tasks of one run; "
        "runs differ in their seed. MLP 1-40-40-1, 25 tasks per meta-step, inner SGD 0.01, "
        "Adam 1e-3 (Reptile: 5 inner steps of 0.02, scored with that step size). Meta-SGD adapts "
        "with its meta-learned per-parameter step sizes, tuned for one step; at 10 steps they "
        "can overshoot. Paper references: MAML (Finn et al. "
        "2017) Figure 3, Meta-SGD (Li et al. 2017) Table 1.",
        "",
        "| algorithm | seed | meta-steps | MSE before | MSE after 1 step | MSE after 10 steps "
        "| minutes | command |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        cells = [_cell(m, c) for m, c in (r["mse_before"], r["mse_1"], r["mse_10"])]
        lines.append(
            f"| {r['algorithm']} | {r['seed']} | {r['num_steps']:,} | {' | '.join(cells)} "
            f"| {r['seconds'] / 60:.1f} | `{r['command']}` |"
        )
    by_algo: dict[str, list[dict]] = {}
    for r in rows:
        by_algo.setdefault(r["algorithm"], []).append(r)
    lines += ["", "Across seeds (mean of the per-run means ± their standard deviation):", "",
              "| algorithm | seeds | MSE after 1 step | MSE after 10 steps |",
              "|---|---:|---:|---:|"]  # fmt: skip
    for algorithm, rs in by_algo.items():
        one, ten = (np.array([r[f"mse_{k}"][0] for r in rs]) for k in (1, 10))
        spread = _spread
        lines.append(f"| {algorithm} | {len(rs)} | {spread(one)} | {spread(ten)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--num-steps", type=int, default=70_000)
    parser.add_argument("--quick", action="store_true", help="one seed, 2,000 steps (a smoke run)")
    parser.add_argument(
        "--omniglot", action="store_true", help="also run benchmarks.reproduce_omniglot"
    )
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seeds, num_steps = ([0], 2000) if args.quick else (args.seeds, args.num_steps)
    from jmeta.train.machine import describe_machine

    machine = describe_machine()
    stem = args.out / ("reproduce_sinusoid_quick" if args.quick else "reproduce_sinusoid")
    args.out.mkdir(parents=True, exist_ok=True)

    def write(rows: list[dict]) -> None:  # after every run, so a cut-short call keeps its rows
        report = {"machine": machine, "rows": rows}
        stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
        stem.with_suffix(".md").write_text(sinusoid_markdown(rows, machine))

    run_sinusoid(seeds, num_steps, args.runs_dir, write)
    print(stem.with_suffix(".md").read_text())
    if args.omniglot:
        import subprocess
        import sys

        script = Path(__file__).with_name("reproduce_omniglot.py")
        return subprocess.call([sys.executable, str(script), *(["--quick"] if args.quick else [])])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
