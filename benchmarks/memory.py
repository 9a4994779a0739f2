"""Memory of a second-order MAML meta-step: inner steps x remat x precision, and task chunking.

Conv4 (64 filters, batch norm), Omniglot-shaped 5-way 1-shot tasks with 15
queries per class, a meta-batch of 32 tasks, second-order MAML with an Adam
meta-optimizer: the whole compiled meta-step (``jmeta.jit_step``). For each
configuration the step is compiled in a fresh process and XLA's compiled
memory analysis is read (``jax.jit(f).lower(...).compile().memory_analysis()``:
temporary buffers, arguments, outputs). Where the backend reports allocator
statistics (GPUs), the step is also run once and ``device.memory_stats()``'s
peak is reported; on CPU the step is only compiled (XLA:CPU's memory analysis
does not depend on LLVM optimisation, so the child processes compile with it
off to save time).

Tables: (1) inner steps 1, 5, 10, 20 x remat off/on x float32/bfloat16 compute;
(2) task chunking (``meta_train_step(..., chunk_size=c)``) at 5 inner steps.
Prints the markdown and writes it to ``benchmarks/results/memory.md``.

Run from the repository root (add ``--quick`` for a small subset):

    PYTHONPATH=$PWD python benchmarks/memory.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

NUM_TASKS = 32
MiB = 2**20


def measure(config: dict) -> dict:
    """Compile (and where possible run) one configuration; runs in a child process."""
    import jax
    import optax
    from _common import conv4, random_image_tasks

    import jmeta

    init, apply = conv4(5, config["precision"])
    learner = jmeta.maml(
        apply,
        jmeta.losses.cross_entropy,
        inner_lr=0.4,
        num_steps=config["steps"],
        remat=config["remat"],
        metrics={"accuracy": jmeta.losses.accuracy},
    )
    with jax.numpy_dtype_promotion("standard"):  # optax.adam
        step = jmeta.meta_train_step(learner, optax.adam(1e-3), chunk_size=config["chunk"])
        state = step.init(init(jax.random.key(0)))
        tasks = random_image_tasks(jax.random.key(1), NUM_TASKS)
        start = time.perf_counter()
        compiled = jmeta.jit_step(step).lower(state, tasks, jax.random.key(2)).compile()
        result = {"compile_s": time.perf_counter() - start}
        analysis = compiled.memory_analysis()
        for name in ("temp", "argument", "output", "alias"):
            result[name] = getattr(analysis, f"{name}_size_in_bytes", 0) / MiB
        device = jax.devices()[0]
        if device.memory_stats() is not None:  # run it: the allocator's peak and a step time
            state, metrics = compiled(state, tasks, jax.random.key(2))
            jax.block_until_ready(metrics)
            start = time.perf_counter()
            state, metrics = compiled(state, tasks, jax.random.key(3))
            jax.block_until_ready(metrics)
            result["step_s"] = time.perf_counter() - start
            result["peak"] = device.memory_stats().get("peak_bytes_in_use", 0) / MiB
            result["finite"] = bool(metrics["finite"])
    return result


def run_child(config: dict, env: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--one", json.dumps(config)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        oom = "RESOURCE_EXHAUSTED" in proc.stderr or "out of memory" in proc.stderr.lower()
        return {"error": "out of memory" if oom else tail[0][:120]}
    return json.loads(lines[-1])


def configurations(quick: bool) -> tuple[list[dict], list[dict]]:
    steps = (1, 5) if quick else (1, 5, 10, 20)
    precisions = ("float32",) if quick else ("float32", "bfloat16")
    grid = [
        {"steps": k, "remat": r, "precision": p, "chunk": None}
        for p in precisions
        for r in (False, True)
        for k in steps
    ]
    chunks = (None, 8) if quick else (None, 16, 8, 4, 1)
    chunked = [{"steps": 5, "remat": False, "precision": "float32", "chunk": c} for c in chunks]
    return grid, chunked


def fmt(result: dict, key: str) -> str:
    if "error" in result:
        return result["error"] if key == "temp" else "-"
    value = result.get(key)
    return "n/a" if value is None else f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="inner steps 1, 5; float32 only")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(json.loads(args.one))), flush=True)
        return

    import jax
    from _common import RESULTS, markdown_table

    from benchmarks.machine import describe

    backend = jax.default_backend()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).parents[1]), env.get("PYTHONPATH")])
    )
    if backend == "cpu":
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
        ).strip()
    machine = describe()
    grid, chunked = configurations(args.quick)
    results = {}
    for config in grid + chunked:
        key = json.dumps(config, sort_keys=True)
        if key not in results:
            results[key] = run_child(config, env, args.timeout)
            print(config, results[key], flush=True)

    def get(config):
        return results[json.dumps(config, sort_keys=True)]

    runs = any("peak" in r for r in results.values())
    header = ["precision", "remat", "inner steps", "temp MiB", "x of 1 step", "args MiB", "out MiB"]
    header += ["peak MiB (run)", "step s"] if runs else []
    rows = []
    for config in grid:
        r = get(config)
        base = get({**config, "steps": 1})
        growth = "-"
        if "temp" in r and "temp" in base and base["temp"]:
            growth = f"{r['temp'] / base['temp']:.2f}"
        row = [config["precision"], "on" if config["remat"] else "off", config["steps"]]
        row += [fmt(r, "temp"), growth, fmt(r, "argument"), fmt(r, "output")]
        if runs:
            row += [fmt(r, "peak"), f"{r['step_s']:.3f}" if "step_s" in r else "-"]
        rows.append(row)
    chunk_header = ["chunk size", "chunks", "temp MiB", "x of unchunked"]
    chunk_header += ["peak MiB (run)", "step s"] if runs else []
    chunk_rows = []
    base = get(chunked[0])
    for config in chunked:
        r = get(config)
        c = config["chunk"] or NUM_TASKS
        ratio = f"{r['temp'] / base['temp']:.2f}" if "temp" in r and "temp" in base else "-"
        row = [c, NUM_TASKS // c, fmt(r, "temp"), ratio]
        if runs:
            row += [fmt(r, "peak"), f"{r['step_s']:.3f}" if "step_s" in r else "-"]
        chunk_rows.append(row)

    text = "\n".join(
        [
            "# Memory of a second-order MAML meta-step",
            "",
            f"Machine: {machine}.",
            "",
            "Conv4 (64 filters, batch norm), Omniglot-shaped 5-way 1-shot tasks (15 queries per "
            f"class), {NUM_TASKS} tasks per meta-batch, second-order MAML (inner SGD, lr 0.4), "
            "Adam meta-optimizer; the whole compiled meta-step. `temp` is XLA's compiled "
            "memory analysis of temporary buffers (the activations kept for the backward "
            "pass live here); `args`/`out` are the step's inputs and outputs (state, tasks). "
            + (
                "`peak` is the allocator's peak (`device.memory_stats()`) over compiling and "
                "running the step once in a fresh process; `step s` one step's time."
                if runs
                else "This backend reports no allocator statistics, so the steps were "
                "compiled but not run."
            ),
            "",
            "## Inner steps x remat x precision",
            "",
            markdown_table(header, rows),
            "",
            "`x of 1 step`: temp memory relative to one inner step with the same remat and "
            "precision. Without remat every inner step keeps its activations for the "
            "backward pass; with `remat=True` (`jax.checkpoint` per inner step) it keeps "
            "only each step's parameters and recomputes the rest."
            + (
                " On XLA:CPU, bfloat16 convolutions and matrix products are computed in "
                "float32 (the compiled program converts their inputs and outputs), so "
                "bfloat16 saves little memory here; GPUs compute them in bfloat16."
                if backend == "cpu"
                else ""
            ),
            "",
            f"## Task chunking (5 inner steps, no remat, float32, {NUM_TASKS} tasks)",
            "",
            markdown_table(chunk_header, chunk_rows),
            "",
            "`meta_train_step(..., chunk_size=c)` runs the meta-batch as sequential chunks "
            "of c vmapped tasks (`lax.scan`), each chunk's backward pass finishing before "
            "the next chunk starts, with the same result as the unchunked step.",
            "",
        ]
    )
    print(text)
    out = args.out or RESULTS / ("memory_quick.md" if args.quick else "memory.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
