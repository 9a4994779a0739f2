"""Tasks/s of ``jmeta train`` (the library call) on 1, 2, 4 and 8 devices.

Runs the trainer on sinusoid regression (second-order MAML, MLP 1-40-40-1,
10-shot, 32 tasks per meta-step, 100 meta-steps per compiled call) with
``devices`` = 1, 2, 4, 8 and reports the median of the trainer's own
``tasks_per_s`` (metrics.jsonl; each compiled call timed without its
compilation) and the test MSE, which must agree across device counts.

On a CPU the devices are simulated (``--xla_force_host_platform_device_count``)
and share the machine's cores: the table shows what the sharding costs, not a
speed-up. Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/trainer_devices.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

if "jax" not in sys.modules:  # before JAX starts: 8 simulated CPU devices
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke test)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import jax

    from jmeta.train import TrainConfig, read_metrics, train
    from jmeta.train.machine import describe_machine

    num_steps, per_call = (400, 100) if args.quick else (2_000, 100)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for devices in (1, 2, 4, 8):
            if devices > jax.local_device_count():
                break
            config = TrainConfig(
                meta_batch_size=32, num_steps=num_steps, steps_per_call=per_call,
                eval_interval=0, checkpoint_interval=0, val_tasks=32, eval_tasks=96,
                test_inner_steps=(1,), devices=devices, output_dir=f"{tmp}/{devices}",
            )  # fmt: skip
            with jax.numpy_dtype_promotion("standard"):
                result = train(config, progress=False)
            records = read_metrics(Path(config.output_dir) / "metrics.jsonl")
            rates = [r["tasks_per_s"] for r in records if r["split"] == "train"]
            mse = result.test[1]["loss"]
            rows.append((devices, float(np.median(rates)), result.seconds, mse.mean))
            print(rows[-1], flush=True)

    lines = [
        "# `jmeta train` on 1, 2, 4 and 8 devices",
        "",
        f"Machine: {describe_machine()}.",
        "",
        "Workload: `jmeta.train.train` on sinusoid regression, second-order MAML with 1 inner "
        f"step, MLP 1-40-40-1, 10-shot, 32 tasks per meta-step, {num_steps} meta-steps in calls "
        f"of {per_call}; `tasks/s` is the median of the trainer's own per-call rate "
        "(compilation excluded), `run s` the whole call (compilation, test and writing "
        "included).",
        "",
        "| devices | tasks/s | run s | test MSE (96 tasks, 1 inner step) |",
        "| ---: | ---: | ---: | ---: |",
        *[f"| {d} | {rate:,.0f} | {secs:.1f} | {mse:.5f} |" for d, rate, secs, mse in rows],
        "",
        (
            f"These devices are simulated CPU devices (`--xla_force_host_platform_device_count`) "
            f"that share the machine's {os.cpu_count()} cores, so more of them cannot be faster: "
            f"the table shows what splitting the meta-batch costs. For this tiny per-task "
            f"workload (an MLP of 1,761 parameters) the cost is large: at {rows[-1][0]} devices "
            f"the trainer runs {rows[-1][1] / rows[0][1]:.0%} of the one-device rate (each "
            "simulated device runs its share in its own thread and every step ends in an "
            "all-reduce). No GPU or TPU was available for this measurement."
            if jax.default_backend() == "cpu"
            else "Real accelerators: the numbers are throughput."
        ),
        "",
        "The test MSE differs between device counts after this many steps: the parameters "
        "agree to about 1e-7 after 100 steps, but the rounding differences of the sums over "
        "tasks grow over hundreds of Adam steps (tests/train/test_devices.py checks agreement "
        "on short runs; docs/scaling.md, 'The trainer on every device').",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = args.out or RESULTS / ("trainer_devices_quick.md" if args.quick else "trainer_devices.md")
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
