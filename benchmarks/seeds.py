"""Four seeds in one compiled program (``--seeds 0 1 2 3``) against four runs one after another.

Workload: ``jmeta.train.train`` on sinusoid regression (second-order MAML, one
inner step, MLP 1-40-40-1, 10-shot, 25 tasks per meta-step), ``--num-steps``
meta-steps in calls of ``--steps-per-call``, no validation, one test of 100
tasks, one device. Each round times both ways, in alternating order (round 1:
together first; round 2: one after another first; ...), so that a change of the
machine's load during the run falls on both. Two times per way:

* ``wall s``: the whole ``train`` calls (compilation, test and writing
  included), what a user waits for;
* ``train s``: the sum of the trainer's own timed compiled calls
  (``steps / (tasks_per_s / meta_batch_size)`` from metrics.jsonl, compilation
  excluded).

Each way runs in a fresh process with a fresh persistent compilation cache
(``$JMETA_COMPILATION_CACHE``), as a first run on a machine would: the four runs
one after another compile once and load the program from the cache three
times; the seeds together compile their program once. The load average is
recorded before and after. Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/seeds.py [--quick] [--device cpu|gpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import machine  # noqa: E402

SEEDS = (0, 1, 2, 3)


def _config(out: str, num_steps: int, per_call: int, **seed):
    from jmeta.train import TrainConfig

    return TrainConfig(
        num_steps=num_steps, steps_per_call=per_call, eval_interval=0, checkpoint_interval=0,
        eval_tasks=100, test_inner_steps=(1,), devices=1, output_dir=out, **seed,
    )  # fmt: skip


def _train_seconds(run_dir: Path, batch: int) -> float:
    """Seconds inside the compiled training calls (the trainer's own rate, compile excluded)."""
    from jmeta.train import read_metrics

    records = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["split"] == "train"]
    if records and "seed" in records[0]:  # one record per seed and call: one rate per call
        records = [r for r in records if r["seed"] == records[0]["seed"]]
    total, last = 0.0, 0
    for r in records:
        steps = r["step"] - last
        last = r["step"]
        seeds = len(SEEDS) if "seed" in r else 1
        total += steps * batch * seeds / r["tasks_per_s"]
    return total


def one_way(way: str, tmp: str, num_steps: int, per_call: int) -> dict:
    """Time one way in this process: ``{"wall_s", "train_s", "test_mse"}``."""
    import jax

    from jmeta.train import train

    started = time.perf_counter()
    with jax.numpy_dtype_promotion("standard"):
        if way == "together":
            out = f"{tmp}/together"
            result = train(_config(out, num_steps, per_call, seeds=SEEDS), progress=False)
            wall = time.perf_counter() - started
            inside = _train_seconds(Path(out), result.config.meta_batch_size)
            mse = [result.seeds.test[k][1]["loss"].mean for k in SEEDS]
        else:
            inside, mse = 0.0, []
            for k in SEEDS:
                out = f"{tmp}/seed{k}"
                result = train(_config(out, num_steps, per_call, seed=k), progress=False)
                inside += _train_seconds(Path(out), result.config.meta_batch_size)
                mse.append(result.test[1]["loss"].mean)
            wall = time.perf_counter() - started
    return {"wall_s": wall, "train_s": inside, "test_mse": mse}


def _in_fresh_process(way: str, tmp: str, num_steps: int, per_call: int) -> dict:
    env = {**os.environ, "JMETA_COMPILATION_CACHE": f"{tmp}/xla",
           "PYTHONPATH": str(machine.REPO)}  # fmt: skip
    argv = [sys.executable, __file__, "--one", way, "--tmp", tmp,
            "--num-steps", str(num_steps), "--steps-per-call", str(per_call)]  # fmt: skip
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-steps", type=int, default=2000)
    parser.add_argument("--steps-per-call", type=int, default=500)
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--out", type=Path, default=None, help="folder for the result files")
    parser.add_argument("--one", choices=("together", "one after another"), help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child process: one way, one JSON line
        print(json.dumps(one_way(args.one, args.tmp, args.num_steps, args.steps_per_call)))
        return
    if args.quick:
        args.rounds, args.num_steps, args.steps_per_call = 1, 100, 50

    import jax

    load_before = machine.load_average()
    rows = []
    for round_ in range(args.rounds):
        order = ("together", "one after another")
        for way in order if round_ % 2 == 0 else order[::-1]:
            with tempfile.TemporaryDirectory() as tmp:
                timed = _in_fresh_process(way, tmp, args.num_steps, args.steps_per_call)
            rows.append({"round": round_ + 1, "way": way, **timed})
            print(json.dumps(rows[-1]), flush=True)
    load_after = machine.load_average()

    def median(way, key):
        values = sorted(r[key] for r in rows if r["way"] == way)
        return values[len(values) // 2]

    summary = {
        way: {"wall_s": median(way, "wall_s"), "train_s": median(way, "train_s")}
        for way in ("together", "one after another")
    }
    stem = machine.result_stem("seeds", args.device)
    folder = args.out or machine.REPO / "benchmarks" / "results"
    record = {
        "machine": machine.describe(), "device": jax.devices()[0].device_kind,
        "cores_used": machine.cores_used(), "load_average": [load_before, load_after],
        "workload": {"seeds": list(SEEDS), "num_steps": args.num_steps,
                     "steps_per_call": args.steps_per_call, "meta_batch_size": 25},
        "rounds": rows, "median": summary,
    }  # fmt: skip
    (folder / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    together, apart = summary["together"], summary["one after another"]
    lines = [
        "# Four seeds in one program against four runs one after another",
        "",
        f"Machine: {record['machine']}; device {record['device']}; load average "
        f"{load_before:.2f} before, {load_after:.2f} after.",
        "",
        f"Workload: `jmeta.train.train`, MAML on sinusoid regression (MLP 1-40-40-1, 25 tasks "
        f"per meta-step), {args.num_steps} meta-steps in calls of {args.steps_per_call}, one "
        f"device; seeds {', '.join(map(str, SEEDS))}. {args.rounds} rounds, alternating which "
        "way runs first, each way in a fresh process with a fresh persistent compilation cache; "
        "medians over rounds.",
        "",
        "| way | wall s (compile, test, writing included) | train s (compiled calls only) |",
        "| --- | ---: | ---: |",
        f"| `--seeds 0 1 2 3` (one program) | {together['wall_s']:.1f} | "
        f"{together['train_s']:.1f} |",
        f"| 4 runs one after another | {apart['wall_s']:.1f} | {apart['train_s']:.1f} |",
        f"| ratio (one after another / together) | {apart['wall_s'] / together['wall_s']:.2f} | "
        f"{apart['train_s'] / together['train_s']:.2f} |",
        "",
        "Each round:",
        "",
        "| round | way | wall s | train s |",
        "| ---: | --- | ---: | ---: |",
        *[f"| {r['round']} | {r['way']} | {r['wall_s']:.1f} | {r['train_s']:.1f} |" for r in rows],
        "",
    ]
    (folder / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
