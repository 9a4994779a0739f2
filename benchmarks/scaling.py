"""Meta-steps/s and tasks/s of the sharded meta-step on 1, 2, 4, 8 devices.

For each device count and each path (``jit`` with ``NamedSharding``,
``shard_map`` with an explicit ``pmean``, ``pmap``) the same meta-training run
is compiled and timed: second-order MAML, Adam meta-optimizer, tasks sampled
inside the compiled call (``sharded_scan_steps``; the ``pmap`` path samples
with a jitted sampler and calls the pmapped step once per meta-step). The
first call (compile + the first steps) is timed apart; then the median of
several calls of ``--steps`` meta-steps each. The final column checks that
every run computed the same parameters as the one-device run.

Workloads: ``omniglot`` (Conv4 64 filters, 5-way 1-shot, 15 queries per class,
random pixels, 32 tasks) and ``sinusoid`` (MLP 1-40-40-1, 10-shot, 64 tasks).
``--task auto`` picks omniglot on accelerators and sinusoid on CPU, where a
Conv4 step takes minutes. On CPU the devices are simulated
(``jax_num_cpu_devices=8``) and share the machine's cores: the table then shows
the overhead and the agreement of the parallel paths, not a speed-up.

Run from the repository root (``--quick`` for fewer and shorter timings):

    PYTHONPATH=$PWD python benchmarks/scaling.py
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))


def workload(name: str):
    """``(learner, init_params, sample, num_tasks)`` of a named workload."""
    from _common import conv4, random_image_tasks, sinusoid_mlp

    import jmeta

    if name == "omniglot":
        init, apply = conv4(5)
        learner = jmeta.maml(apply, jmeta.losses.cross_entropy, inner_lr=0.4, num_steps=1)
        return (
            learner,
            init(jax.random.key(0)),
            functools.partial(random_image_tasks, num_tasks=32),
            32,
        )

    init, apply = sinusoid_mlp()
    learner = jmeta.maml(apply, jmeta.losses.mse, inner_lr=0.01, num_steps=1)
    sample = jmeta.tasks.batch_sampler(jmeta.tasks.sinusoid, 64)
    return learner, init(jax.random.key(0)), sample, 64


def build(path: str, learner, sample, num_devices: int, steps: int):
    """``(init_state, run)`` where ``run(state, key)`` does ``steps`` meta-steps."""
    import optax

    import jmeta
    from jmeta import parallel

    devices = jax.devices()[:num_devices]
    axis = "tasks" if path in ("shard_map", "pmap") else None
    step = jmeta.meta_train_step(learner, optax.adam(1e-3), axis_name=axis)
    if path == "one device":
        return step.init, jmeta.scan_steps(step, sample, steps)
    if path == "pmap":
        update, sample_jit = parallel.pmap_step(step, devices), jax.jit(sample)

        def run(state, key):
            metrics, first = None, int(parallel.unreplicate(state.step))
            for s in range(first, first + steps):  # like scan_steps: step s uses fold_in(key, s)
                task_key, step_key = jax.random.split(jax.random.fold_in(key, s))
                state, metrics = update(state, sample_jit(task_key), step_key)
            return state, metrics

        return lambda p: parallel.replicate_for_pmap(step.init(p), devices), run
    mesh = parallel.task_mesh(devices)
    update = step if path == "jit" else parallel.shard_map_step(step, mesh)
    return step.init, parallel.sharded_scan_steps(update, sample, steps, mesh)


def measure(path, learner, params, sample, num_devices, steps, repeats):
    from jmeta import parallel

    init, run = build(path, learner, sample, num_devices, steps)
    state = init(jax.tree.map(lambda x: x.copy(), params))
    key = jax.random.key(1)
    start = time.perf_counter()
    state, metrics = run(state, key)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - start
    final = state.meta_params if path != "pmap" else parallel.unreplicate(state.meta_params)
    final = jax.tree.map(lambda x: jax.device_get(x), final)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = run(state, key)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("auto", "omniglot", "sinusoid"), default="auto")
    parser.add_argument("--steps", type=int, default=None, help="meta-steps per timed call")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    try:  # before any backend starts; affects the CPU backend only
        jax.config.update("jax_num_cpu_devices", 8)
    except Exception as err:  # noqa: BLE001 - old JAX or an already started backend
        print(f"could not ask for 8 CPU devices ({err}); using what is there")
    import numpy as np
    from _common import RESULTS, markdown_table

    from benchmarks.machine import describe

    backend = jax.default_backend()
    task = args.task if args.task != "auto" else ("sinusoid" if backend == "cpu" else "omniglot")
    steps = args.steps or (5 if args.quick else 20)
    repeats = args.repeats or (2 if args.quick else 5)
    learner, params, sample, num_tasks = workload(task)
    counts = [n for n in (1, 2, 4, 8) if n <= jax.device_count()]
    machine = describe()

    with jax.numpy_dtype_promotion("standard"):  # optax.adam
        _, _, reference = measure("one device", learner, params, sample, 1, steps, 1)
        rows = []
        for n in counts:
            for path in ("jit", "shard_map", "pmap"):
                try:
                    first, per_call, final = measure(
                        path, learner, params, sample, n, steps, repeats
                    )
                except Exception as err:  # noqa: BLE001 - report and go on
                    rows.append([n, path, "-", "-", "-", f"failed: {str(err)[:80]}"])
                    continue
                diff = max(
                    float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(reference), strict=True)
                )
                rate = steps / per_call
                rows.append(
                    [
                        n,
                        path,
                        f"{first:.1f}",
                        f"{rate:.2f}",
                        f"{rate * num_tasks:.0f}",
                        f"{diff:.1e}",
                    ]
                )
                print(rows[-1], flush=True)

    header = [
        "devices",
        "path",
        "first call s",
        "meta-steps/s",
        "tasks/s",
        "max abs diff vs 1 device",
    ]
    note = (
        "The devices are simulated CPU devices sharing the machine's cores "
        f"({jax.devices()[0].device_kind}, see the load average above): this shows the "
        "overhead of each path and that all compute the same parameters, not a speed-up."
        if backend == "cpu"
        else "Real accelerators: the numbers are throughput."
    )
    workload_line = {
        "omniglot": "Conv4 (64 filters, batch norm), 5-way 1-shot, 15 queries per class, random "
        "pixels, 32 tasks per meta-batch, second-order MAML with 1 inner step",
        "sinusoid": "sinusoid regression, MLP 1-40-40-1, 10-shot, 64 tasks per meta-batch, "
        "second-order MAML with 1 inner step",
    }[task]
    text = "\n".join(
        [
            "# Scaling the meta-step over devices",
            "",
            f"Machine: {machine}.",
            "",
            f"Workload: {workload_line}; Adam meta-optimizer. Each timed call runs {steps} "
            f"meta-steps with tasks sampled inside the compiled call (pmap: one call per "
            f"step); `meta-steps/s` is the median over {repeats} calls, `first call s` the "
            "first call (compilation included). `max abs diff vs 1 device`: the largest "
            f"parameter difference after the first {steps} steps against the unsharded "
            "`jmeta.scan_steps` run.",
            "",
            markdown_table(header, rows),
            "",
            note,
            "",
        ]
    )
    print(text)
    out = args.out or RESULTS / ("scaling_quick.md" if args.quick else "scaling.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
