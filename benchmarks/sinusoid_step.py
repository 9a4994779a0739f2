"""The default job's meta-step (MAML, sinusoid): jmeta against a hand-written step.

Two comparisons, in one run on one machine:

1. jmeta's meta-step (``jmeta.meta_train_step`` + ``jmeta.jit_step``) against
   the hand-written plain-JAX step of :mod:`benchmarks.peers.plain_jax`, both on
   the same pre-made batch, one compiled call per meta-step.
2. Many meta-steps per compiled call (``jmeta.scan_steps``: tasks sampled on
   device, no host round trip) against one call per meta-step (the same
   function with one step per call).

Settings are the MAML paper's, as ``jmeta train`` runs them by default (its
learner, task sampler and meta-optimizer are built by the trainer's own
functions): MLP 1-40-40-1, 10-shot, 25 tasks, inner lr 0.01, one inner step,
Adam 1e-3. Each round times every contender once, in a fresh random order, and
the report gives medians over rounds, which keeps a busy machine's noise out of
the ratios; CPU time (``time.process_time``, all of this process's threads) is
reported next to wall time, since on a shared machine wall time also counts the
time spent waiting for a core. ``--cores 1`` pins the process to one core before
JAX starts its threads (XLA:CPU's thread pool costs more than it gives on steps
this small). Writes
``benchmarks/results/sinusoid_step_<machine>_<date>[_1core].{md,json}``.

Usage: ``python -m benchmarks.sinusoid_step [--rounds 21] [--cores 1]``
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import time
from pathlib import Path

import jax
import numpy as np

import jmeta
from benchmarks import machine
from benchmarks.peers import get_builder
from benchmarks.peers.workloads import get_workload

RESULTS = Path(__file__).resolve().parent / "results"
STEPS_PER_CALL = 100


def _per_step_seconds(fn, steps_per_call: int, calls: int) -> tuple[float, float]:
    """Wall-clock and CPU (this process, all threads) seconds per meta-step."""
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    steps = calls * steps_per_call
    return (time.perf_counter() - start) / steps, (time.process_time() - start_cpu) / steps


def default_job_step():
    """``(step, sample, init_state)`` of ``jmeta train``'s default run, built as the
    trainer builds it."""
    from jmeta.train.build import build_learners, initial_state, meta_optimizer
    from jmeta.train.config import TrainConfig, resolve_config
    from jmeta.train.problem import build_problem

    config = resolve_config(TrainConfig())
    problem = build_problem(config)
    learner, _ = build_learners(config, problem)
    step = jmeta.meta_train_step(learner, meta_optimizer(config))
    # Sinusoid tasks read no data (problem.train.data is ()).
    sample = jmeta.tasks.batch_sampler(problem.train.sample, config.meta_batch_size)
    return step, sample, lambda: initial_state(step, learner, problem.model, config.seed)[0]


def pin_to_cores(cores: int) -> None:
    """Restrict this process (and the threads it starts later) to its first ``cores`` CPUs."""
    allowed = sorted(os.sched_getaffinity(0))
    if cores > len(allowed):
        raise SystemExit(f"--cores {cores}: only {len(allowed)} CPUs are available")
    os.sched_setaffinity(0, allowed[:cores])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--cores", type=int, default=None, help="pin to this many CPU cores")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.cores is not None:
        pin_to_cores(args.cores)  # before the first JAX call starts XLA's threads
    workload = get_workload("sinusoid")

    # 1. The same step on the same batch: jmeta vs hand-written plain JAX.
    jm, plain = get_builder("jmeta")(workload, 25), get_builder("plain_jax")(workload, 25)
    for step in (jm, plain):
        step.compile()
        step()

    # 2. Many steps per call vs one step per call (sampling inside the call).
    train, sample, init_state = default_job_step()
    runs = {n: jmeta.scan_steps(train, sample, n) for n in (1, STEPS_PER_CALL)}
    states = {n: init_state() for n in runs}
    key = jax.random.key(1)

    def call(n: int) -> None:
        states[n], metrics = runs[n](states[n], key)
        jax.block_until_ready(metrics)

    for n in runs:
        call(n)  # compile

    contenders = {
        "jmeta step, 1 call/step": (jm, 1, 100),
        "hand-written plain JAX, 1 call/step": (plain, 1, 100),
        "jmeta scan_steps, 1 step/call (sampling inside)": (functools.partial(call, 1), 1, 100),
        f"jmeta scan_steps, {STEPS_PER_CALL} steps/call (sampling inside)": (
            functools.partial(call, STEPS_PER_CALL), STEPS_PER_CALL, 1),
    }  # fmt: skip
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    cpu_samples: dict[str, list[float]] = {name: [] for name in contenders}
    order = random.Random(0)
    for _ in range(
        args.rounds
    ):  # each round in a new order: load changes hit every contender alike
        for name in order.sample(list(contenders), len(contenders)):
            fn, steps_per_call, calls = contenders[name]
            wall, cpu = _per_step_seconds(fn, steps_per_call, calls)
            samples[name].append(wall)
            cpu_samples[name].append(cpu)
    medians = {name: float(np.median(v)) for name, v in samples.items()}
    cpu_medians = {name: float(np.median(v)) for name, v in cpu_samples.items()}

    names = list(contenders)
    vs_plain = medians[names[1]] / medians[names[0]]
    scan_speedup = medians[names[2]] / medians[names[3]]
    # CPU time leaves out the time this process waits for a core on a busy machine.
    cpu_vs_plain = cpu_medians[names[1]] / cpu_medians[names[0]]
    cpu_scan_speedup = cpu_medians[names[2]] / cpu_medians[names[3]]
    load = machine.load_average()
    device = "cpu" if jax.default_backend() == "cpu" else "gpu"
    title = machine.headline(device)
    if device == "cpu":
        title += f" (pinned to {args.cores})" if args.cores is not None else ""
    stem = machine.result_stem("sinusoid_step", device)
    stem += f"_{args.cores}core" if args.cores is not None else ""
    command = "python -m benchmarks.sinusoid_step" + (
        f" --cores {args.cores}" if args.cores is not None else ""
    )
    lines = [
        f"### Sinusoid MAML meta-step on {title}",
        "",
        f"MLP 1-40-40-1, 25 tasks of 10+10 points, 1 inner step (lr 0.01), second order, Adam 1e-3 "
        "(jmeta: on the raveled parameters, as `jmeta train` builds it); "
        f"median over {args.rounds} rounds, each timing every contender in a new random order; "
        f"jax {jax.__version__}; "
        f"1-minute load average {load:.1f} at the end. Machine: {machine.describe()}. "
        f"Command: `{command}`.",
        "",
        "| meta-step | ms / step (wall) | meta-steps / s (wall) | CPU ms / step |",
        "|---|---:|---:|---:|",
        *[
            f"| {name} | {1e3 * t:.3f} | {1 / t:,.0f} | {1e3 * cpu_medians[name]:.3f} |"
            for name, t in medians.items()
        ],
        "",
        (
            f"jmeta's step vs the hand-written one: {vs_plain:.2f}x the speed in wall time, "
            f"{cpu_vs_plain:.2f}x in CPU time (>= 1 means no slower). "
            f"{STEPS_PER_CALL} steps per compiled call vs one: {scan_speedup:.1f}x faster per "
            f"step in wall time, {cpu_scan_speedup:.1f}x in CPU time."
        ),
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.md").write_text("\n".join(lines))
    (args.out / f"{stem}.json").write_text(json.dumps(
        {"machine": title, "details": machine.describe(), "load_average_1min": load,
         "median_s_per_step": medians,
         "samples": samples, "jmeta_vs_plain": vs_plain, "scan_speedup": scan_speedup,
         "median_cpu_s_per_step": cpu_medians, "cpu_samples": cpu_samples,
         "cpu_jmeta_vs_plain": cpu_vs_plain, "cpu_scan_speedup": cpu_scan_speedup},
        indent=1))  # fmt: skip
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
