"""Accuracy at convergence on minimal Omniglot: each algorithm with its paper's recipe.

Each recipe is one ``jmeta train`` run with ``--keep-best`` and ``--early-stop``
(validation on ``minimal-val`` every ``eval_interval`` steps) that stops when
validation stops improving, at ``max_steps``, or when the wall-time budget is
spent: the budget is the trainer's ``--time-limit``, checked after every
compiled call of ``steps_per_call`` steps (10 on image data), so a run overruns
it by at most one call and one validation; the final test comes after. A run
folder that exists is resumed (``--resume``) with what is left of the budget.
The best checkpoint is scored on the 600 fixed tasks of ``minimal-test`` (the
trainer's final test), and one JSON result file per recipe is written:
accuracy ± 95% CI, the best step, the steps trained and tasks per step, why
training stopped, the exact command, wall time, machine and load average.
``benchmarks/make_results.py`` renders the result files into RESULTS.md's
accuracy section (:func:`render`; ``--render`` prints it).

    PYTHONPATH=$PWD python benchmarks/accuracy.py --only protonet-5 --budget 3000
    PYTHONPATH=$PWD python benchmarks/accuracy.py --render

Recipes are the papers' where jmeta can express them; every row says what ran.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = "../shared/data/omniglot"  # relative to the repository root, as in the commands
RESULTS = Path("benchmarks/results/accuracy")

COMMON = {"dataset": "omniglot", "data_dir": DATA_DIR, "shots": 1, "keep_best": True,
          "early_stop": 5, "val_tasks": 200, "eval_tasks": 600}  # fmt: skip
#: name -> (config fields, most steps). Papers: ProtoNets (Snell et al. 2017): 60 classes and 5
#: queries per class in each training episode, tested 5- and 20-way (its halving of the
#: learning rate every 2,000 episodes is not applied: jmeta's schedules are constant or cosine);
#: MAML (Finn et al. 2017): 32 tasks of 5-way, 16 of 20-way, 1 / 5 inner steps of 0.4 / 0.1,
#: 3 / 5 at test; MAML++ (Antoniou et al. 2019): its presets (cosine schedule over max steps).
RECIPES: dict[str, tuple[dict, int]] = {
    "protonet-5": ({"algorithm": "protonet", "ways": 60, "test_ways": 5, "queries": 5,
                    "meta_batch_size": 1, "eval_interval": 500, "checkpoint_interval": 500},
                   40_000),
    "protonet-20": ({"algorithm": "protonet", "ways": 60, "test_ways": 20, "queries": 5,
                     "meta_batch_size": 1, "test_queries": 5, "eval_interval": 500,
                     "checkpoint_interval": 500}, 40_000),
    "maml-5": ({"algorithm": "maml", "ways": 5, "meta_batch_size": 32, "inner_steps": 1,
                "inner_lr": 0.4, "test_inner_steps": (3,), "eval_interval": 500,
                "checkpoint_interval": 500}, 60_000),
    "maml-20": ({"algorithm": "maml", "ways": 20, "meta_batch_size": 16, "inner_steps": 5,
                 "inner_lr": 0.1, "test_inner_steps": (5,), "test_queries": 5,
                 "eval_interval": 500, "checkpoint_interval": 500}, 60_000),
    "mamlpp-5": ({"algorithm": "mamlpp", "ways": 5, "eval_interval": 500,
                  "checkpoint_interval": 500}, 50_000),
    "baseline-5": ({"algorithm": "baseline", "ways": 5, "queries": 15, "eval_interval": 500,
                    "checkpoint_interval": 500}, 40_000),
}  # fmt: skip
QUICK = {"eval_interval": 2, "checkpoint_interval": 2, "steps_per_call": 2, "val_tasks": 10,
         "eval_tasks": 20, "meta_batch_size": 2}  # fmt: skip

#: (algorithm, test ways) -> the paper's 1-shot accuracy on full Omniglot (the Vinyals split).
PAPERS = {
    ("maml", 5): "98.7 ± 0.4% (Finn et al. 2017)",
    ("maml", 20): "95.8 ± 0.3% (Finn et al. 2017)",
    ("protonet", 5): "98.8% (Snell et al. 2017, trained 60-way)",
    ("protonet", 20): "96.0% (Snell et al. 2017, trained 60-way)",
    ("mamlpp", 5): "99.47 ± 0.16% (Antoniou et al. 2019)",
    ("mamlpp", 20): "97.65 ± 0.05% (Antoniou et al. 2019)",
}
#: Why the numbers here are below the papers' (printed above the table).
HARDER = (
    "The papers' numbers are on full Omniglot (the Vinyals et al. split: 1,200 training "
    "characters, 4,800 classes with rotations, tested on 423 characters); jmeta's rows are on "
    "minimal Omniglot (Lake et al.'s `images_background_small1/2`: `minimal-train` has 161 "
    "characters of 5 alphabets, 644 classes with rotations; `minimal-test` 2 alphabets, "
    "Sanskrit and Tagalog, 59 characters), so each learner sees about 7 times fewer training "
    "characters, and features learnt from fewer characters transfer less well to new "
    "alphabets: the same recipe scores lower here, and the papers' numbers are context, not "
    "targets."
)
_STOPPED = {"early_stop": "early stop", "time_limit": "budget", "num_steps": "max steps"}


def run_recipe(
    name: str, runs_dir: Path, budget: float, quick: bool = False, data_dir: str = DATA_DIR
) -> dict[str, Any]:
    """Train ``name`` to convergence (or the budget), score its best checkpoint; the result."""
    from benchmarks.reproduce_omniglot import command, describe_machine
    from jmeta.train import TrainConfig, train

    fields, most = RECIPES[name]
    if quick:
        fields, most = {**fields, **QUICK}, 8
    out = runs_dir / name
    load_before = os.getloadavg()
    started = time.perf_counter()
    values = {**COMMON, "data_dir": data_dir, **fields}  # the recipe's (or quick's) win
    config = TrainConfig(**values, num_steps=most, time_limit=budget, output_dir=str(out))
    resume = (out / "config.json").exists()
    train(config, resume=resume, progress=False)
    results = json.loads((out / "results.json").read_text())
    (steps, scores), *_ = results["test"].items()  # one test-time step count per recipe
    del steps
    reason = results.get("stopped", {}).get("reason", "num_steps")
    return {
        "name": name,
        "algorithm": config.algorithm,
        "ways": config.test_ways,
        "train_ways": config.ways,
        "accuracy": scores["accuracy"]["mean"],
        "ci95": scores["accuracy"]["ci95"],
        "test_tasks": scores["accuracy"]["num"],
        "best_step": results["tested_step"],
        "steps": results["step"],
        "max_steps": most,
        "tasks_per_step": config.meta_batch_size,
        "stopped": _STOPPED[reason],
        "commands": [command(config) + (" --resume" if resume else "")],
        "wall_seconds": time.perf_counter() - started,
        "machine": describe_machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "date": datetime.date.today().isoformat(),
        "quick": quick,
    }


def settings(command: str):
    """The :class:`~jmeta.train.TrainConfig` that a ``jmeta train`` command line makes."""
    from jmeta.cli import build_parser
    from jmeta.train import config_from_dict
    from jmeta.train.config import FIELDS

    args = vars(build_parser().parse_args(shlex.split(command)[1:]))
    return config_from_dict({k: v for k, v in args.items() if k in FIELDS})


def render(results_dir: Path) -> str:
    """RESULTS.md's accuracy section, from the result files in ``results_dir``.

    Reads the files :func:`run_recipe` writes, and those of its earlier version
    (trained in chunks, one command each; no ``train_ways``, ``tasks_per_step``
    or ``date``): what a file does not say is read from its last command.
    """
    rows = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    lines = [
        "One `jmeta train` run per row with its paper's recipe (below), trained until "
        "validation on `minimal-val` stopped improving (`--early-stop 5`, validating every 500 "
        "steps), the most steps, or the wall-time budget; the checkpoint with the best "
        "validation accuracy (`--keep-best`) is scored on the 600 fixed 1-shot tasks of "
        "`minimal-test`, mean ± 95% confidence interval. " + HARDER,
        "",
    ]
    if not rows:
        return "\n".join(lines + ["No run has been recorded yet (`benchmarks/results/accuracy/`)."])
    lines += [
        "| row | algorithm | test ways (trained) | accuracy ± 95% CI (`minimal-test` tasks) "
        "| paper, full Omniglot | best step | steps × tasks per step | stopped by | wall time "
        "| machine (load average before → after) |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | --- | ---: | --- |",
    ]
    details = []
    for r in rows:
        config = settings(r["commands"][-1])
        trained = r.get("train_ways", config.ways)
        per_step = r.get("tasks_per_step", config.meta_batch_size)
        before, after = r["load_average"]["before"][0], r["load_average"]["after"][0]
        machine = r["machine"].split("; ")[0]
        quick = " (quick smoke run)" if r.get("quick") else ""
        lines.append(
            f"| {r['name']}{quick} | {r['algorithm']} | {r['ways']} ({trained}) | "
            f"{100 * r['accuracy']:.1f}% ± {100 * r['ci95']:.1f} ({r['test_tasks']} tasks) | "
            f"{PAPERS.get((r['algorithm'], r['ways']), 'not reported')} | {r['best_step']:,} | "
            f"{r['steps']:,} × {per_step} | {r['stopped']} | "
            f"{r['wall_seconds'] / 60:.0f} min | {machine} ({before:.1f} → {after:.1f}) |"
        )
        when = f", {r['date']}" if "date" in r else ""
        details.append(f"- {r['name']}{when}: {r['machine']}.")
        details += [f"  `{c}`" for c in r["commands"]]
    return "\n".join(
        lines
        + ["", "Commands (from the repository root; a `--resume` line continues the one before),"
           " and each row's machine in full:", "", *details]
    ) + "\n"  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=sorted(RECIPES), choices=sorted(RECIPES))
    parser.add_argument(
        "--budget", type=float, default=3600.0,
        help="seconds of meta-training per recipe (the trainer's --time-limit)",
    )  # fmt: skip
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/accuracy"))
    parser.add_argument("--results", type=Path, default=RESULTS, help="result files' folder")
    parser.add_argument("--quick", action="store_true", help="a few steps (smoke test)")
    parser.add_argument("--data-dir", default=DATA_DIR, help="Omniglot's folder")
    parser.add_argument("--render", action="store_true", help="only print the section")
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
    print(render(args.results))


if __name__ == "__main__":
    main()
