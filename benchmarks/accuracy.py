"""Accuracy at convergence on minimal Omniglot: each algorithm with its paper's recipe.

Each recipe trains with ``--keep-best`` and ``--early-stop`` (validation on
``minimal-val`` every ``eval_interval`` steps) until validation stops improving,
``max_steps`` is reached or the wall-time budget is spent: the run is trained in
chunks of ``chunk`` steps (``--resume`` with more ``--num-steps``), and the
budget is checked between chunks. The best checkpoint is then scored on the 600
fixed tasks of ``minimal-test`` (``jmeta eval``'s default), and one JSON result
file per recipe is written: accuracy ± 95% CI, the best step, the steps trained,
why training stopped, the exact commands, wall time, machine and load average.
``--render`` turns the result files into the Markdown of RESULTS.md's accuracy
section (``benchmarks/results/accuracy.md``).

    PYTHONPATH=$PWD python benchmarks/accuracy.py --only protonet-5 --budget 3000
    PYTHONPATH=$PWD python benchmarks/accuracy.py --render

Recipes below are the papers' where jmeta can express them (the trainer uses one
``ways`` for training and test, so ProtoNets' "more ways in training" is not
applied); every row says what ran.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = "../shared/data/omniglot"  # relative to the repository root, as in the commands
RESULTS = Path("benchmarks/results/accuracy")

COMMON = {"dataset": "omniglot", "data_dir": DATA_DIR, "shots": 1, "keep_best": True,
          "early_stop": 5, "val_tasks": 200, "eval_tasks": 600}  # fmt: skip
#: name -> (config fields, steps per chunk, most steps). Papers: MAML (Finn et al. 2017):
#: 32 tasks of 5-way, 16 of 20-way, inner steps 1 / 5 of 0.4 / 0.1, 3 / 5 at test; ProtoNets
#: (Snell et al. 2017): 5 queries per class or more; MAML++ (Antoniou et al. 2019): its presets.
RECIPES: dict[str, tuple[dict, int, int]] = {
    "protonet-5": ({"algorithm": "protonet", "ways": 5, "queries": 5, "meta_batch_size": 8,
                    "eval_interval": 500, "checkpoint_interval": 500}, 2_000, 40_000),
    "protonet-20": ({"algorithm": "protonet", "ways": 20, "queries": 5, "meta_batch_size": 4,
                     "test_queries": 5, "eval_interval": 500, "checkpoint_interval": 500},
                    2_000, 40_000),
    "maml-5": ({"algorithm": "maml", "ways": 5, "meta_batch_size": 32, "inner_steps": 1,
                "inner_lr": 0.4, "test_inner_steps": (3,), "eval_interval": 500,
                "checkpoint_interval": 500}, 2_000, 60_000),
    "maml-20": ({"algorithm": "maml", "ways": 20, "meta_batch_size": 16, "inner_steps": 5,
                 "inner_lr": 0.1, "test_inner_steps": (5,), "test_queries": 5,
                 "eval_interval": 500, "checkpoint_interval": 500}, 2_000, 60_000),
    # One chunk: the cosine schedule spans the run's num_steps (100 epochs of 500 steps).
    "mamlpp-5": ({"algorithm": "mamlpp", "ways": 5, "eval_interval": 500,
                  "checkpoint_interval": 500}, 50_000, 50_000),
    "baseline-5": ({"algorithm": "baseline", "ways": 5, "queries": 15, "eval_interval": 500,
                    "checkpoint_interval": 500}, 2_000, 40_000),
}  # fmt: skip
QUICK = {"eval_interval": 2, "checkpoint_interval": 2, "steps_per_call": 2, "val_tasks": 10,
         "eval_tasks": 20, "meta_batch_size": 2}  # fmt: skip


def run_recipe(
    name: str, runs_dir: Path, budget: float, quick: bool = False, data_dir: str = DATA_DIR
) -> dict:
    """Train ``name`` to convergence (or the budget), score its best checkpoint; the result."""
    from benchmarks.reproduce_omniglot import command, describe_machine
    from jmeta.train import TrainConfig, evaluate_checkpoint, train

    fields, chunk, most = RECIPES[name]
    if quick:
        fields, chunk, most = {**fields, **QUICK}, 4, 8
    out = runs_dir / name
    load_before = os.getloadavg()
    started = time.perf_counter()
    steps, commands, stopped = 0, [], None
    while steps < most and stopped is None and time.perf_counter() - started < budget:
        steps = min(steps + chunk, most)
        values = {**COMMON, "data_dir": data_dir, **fields}  # the recipe's (or quick's) win
        config = TrainConfig(**values, num_steps=steps, output_dir=str(out))
        resume = (out / "config.json").exists()
        commands.append(command(config) + (" --resume" if resume else ""))
        train(config, resume=resume, progress=False)
        stopped = json.loads((out / "results.json").read_text())["stopped"]
        stopped = stopped if stopped["reason"] == "early_stop" else None
    results = json.loads((out / "results.json").read_text())
    scores, step = evaluate_checkpoint(out)  # the best checkpoint
    k = next(iter(scores))
    return {
        "name": name,
        "algorithm": fields["algorithm"],
        "ways": fields["ways"],
        "accuracy": scores[k]["accuracy"].mean,
        "ci95": scores[k]["accuracy"].ci95,
        "test_tasks": scores[k]["accuracy"].num,
        "best_step": step,
        "steps": results["step"],
        "stopped": "early stop" if stopped else ("max steps" if steps >= most else "budget"),
        "commands": commands,
        "wall_seconds": time.perf_counter() - started,
        "machine": describe_machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "quick": quick,
    }


def render(results_dir: Path) -> str:
    """RESULTS.md's accuracy section, from the result files in ``results_dir``."""
    rows = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    lines = [
        "| algorithm | ways | accuracy ± 95% CI (`minimal-test` tasks) | best step | steps "
        "| stopped | wall time | machine (load average before) |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in rows:
        load = r["load_average"]["before"][0]
        lines.append(
            f"| {r['algorithm']} | {r['ways']} | {100 * r['accuracy']:.1f}% ± "
            f"{100 * r['ci95']:.1f} ({r['test_tasks']} tasks) | {r['best_step']} | "
            f"{r['steps']} | {r['stopped']} | "
            f"{r['wall_seconds'] / 60:.0f} min | {r['machine']} ({load:.1f}) |"
        )
    commands = [f"- {r['name']}: `{r['commands'][-1]}`" for r in rows]
    return "\n".join(lines + ["", "Commands (the last chunk of each run):", *commands]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=sorted(RECIPES), choices=sorted(RECIPES))
    parser.add_argument("--budget", type=float, default=3600.0, help="seconds per recipe")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/accuracy"))
    parser.add_argument("--results", type=Path, default=RESULTS, help="result files' folder")
    parser.add_argument("--quick", action="store_true", help="a few steps (smoke test)")
    parser.add_argument("--data-dir", default=DATA_DIR, help="Omniglot's folder")
    parser.add_argument("--render", action="store_true", help="only write accuracy.md")
    args = parser.parse_args()
    os.chdir(REPO)  # the commands and the data path are relative to the repository root
    if not args.render:
        args.results.mkdir(parents=True, exist_ok=True)
        for name in args.only:
            result = run_recipe(
                name, args.runs_dir, args.budget, quick=args.quick, data_dir=args.data_dir
            )
            (args.results / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
            print(f"{name}: {100 * result['accuracy']:.1f}% ± {100 * result['ci95']:.1f}")
    (args.results.parent / "accuracy.md").write_text(render(args.results))


if __name__ == "__main__":
    main()
