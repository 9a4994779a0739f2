"""Issue 17's three CPU targets, jmeta against PyTorch, side by side in one run.

1. ``conv``: the Conv4-64 embedding (``jmeta.models.conv4(None)``; PyTorch's
   ``conv4_embedding`` of :mod:`benchmarks.peers.torch_common`), forward and
   backward with shared weights (a ProtoNets-style step without the
   optimizer), on 120 and on 600 Omniglot-size images (28x28x1). The loss is
   the mean squared embedding; the gradient is taken for every parameter.
2. ``maml``: second-order MAML, Omniglot 5-way 1-shot (15 queries per class),
   one inner step, 32 tasks, Adam: the throughput benchmark's own case, run
   by its peers (:mod:`benchmarks.peers`): ``jmeta`` against ``torch_loop``
   (a per-task loop with ``torch.autograd.grad(create_graph=True)``).
3. ``protonet``: a ProtoNets training step (``jmeta.protonet`` of the Conv4-64
   embedding, ``jmeta.meta_train_step`` with Adam on the raveled parameters,
   as ``jmeta train`` builds it) on Snell et al.'s Omniglot training episode,
   60-way 5-shot with 5 queries per class (600 images), sampled by
   ``jmeta.tasks.few_shot``; against the same step in PyTorch (the same
   embedding, prototypes, squared distances, cross-entropy and
   ``torch.optim.Adam``). ``--protonet-tasks`` adds the trainer's Omniglot
   default, 32 tasks of 5-way 1-shot with one query per class.

jmeta runs with ``conv_impl="auto"`` (its default) and, for the record of
what changed, with the other implementations (``im2col`` was the default
before ``auto`` was measured; ``xla`` is ``lax.conv`` throughout). MAML with
``conv_impl="xla"`` is left out: on this CPU its per-task (grouped)
convolutions did not finish a meta-step in 240 s.

Protocol: everything is float32 and runs in this one process, PyTorch and
XLA each with their default threads (all cores, or ``--cores``). After two warm-up calls per
contender, each round calls every contender of a target once, in a new random
order, so that a change of load on a shared machine hits every contender
alike; the report gives medians over rounds, the median over rounds of the
per-round speed ratio to PyTorch (``> 1``: jmeta faster), the process's CPU
time per call, and the 1-minute load average before and after each target.
It writes ``benchmarks/results/cpu_targets_<cpu>_<date>[_<label>].{md,json}``.

Usage::

    python -m benchmarks.cpu_targets                 # about 5 minutes on an idle 2-core CPU
    python -m benchmarks.cpu_targets --targets conv --rounds 15
    python -m benchmarks.cpu_targets --quick          # tiny sizes: checks the script
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import cpu_name, git_commit, load_average, slug, versions

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = ("conv", "maml", "protonet")
JMETA_IMPLS = ("auto", "im2col", "xla")


# ----------------------------------------------------------------------------- contenders


def conv_contenders(num_images: int, width: int, impls: tuple[str, ...]) -> dict[str, Callable]:
    """Conv4 embedding forward+backward with shared weights on ``num_images`` images."""
    import jax
    import jax.numpy as jnp
    import torch

    import jmeta
    from benchmarks.peers.torch_common import conv4_embedding

    x = np.random.default_rng(0).standard_normal((num_images, 28, 28, 1)).astype(np.float32)
    params = jmeta.models.conv4(None, channels=width).init(jax.random.key(0))
    out: dict[str, Callable] = {}

    tparams = {k: v.requires_grad_() for k, v in torch_conv4_params(params).items()}
    tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def torch_step():
        loss = conv4_embedding(tparams, tx).square().mean()
        torch.autograd.grad(loss, list(tparams.values()))

    out["PyTorch"] = torch_step
    jx = jnp.asarray(x)
    for impl in impls:
        model = jmeta.models.conv4(None, channels=width, conv_impl=impl)
        grad = jax.jit(jax.grad(lambda p, x, m=model: jnp.mean(jnp.square(m.apply(p, x)))))
        out[f"jmeta conv_impl={impl}"] = lambda g=grad: jax.block_until_ready(g(params, jx))
    return out


def torch_conv4_params(params: dict) -> dict:
    """jmeta Conv4 parameters (HWIO kernels, no conv biases) as PyTorch tensors (OIHW)."""
    import torch

    out = {}
    for name, layer in params.items():
        i = name[-1]
        if name.startswith("conv"):
            kernel = np.asarray(layer["kernel"]).transpose(3, 2, 0, 1)
            out[f"conv{i}_w"] = torch.from_numpy(np.ascontiguousarray(kernel))
        elif name.startswith("bn"):
            out[f"bn{i}_scale"] = torch.from_numpy(np.array(layer["scale"]))
            out[f"bn{i}_bias"] = torch.from_numpy(np.array(layer["bias"]))
    return out


def maml_contenders(
    num_tasks: int, width: int, impls: tuple[str, ...], chunk_sizes: tuple[int, ...] = ()
) -> dict[str, Callable]:
    """The throughput benchmark's second-order MAML step (Omniglot 5-way 1-shot); with
    ``chunk_sizes``, also ``conv_impl="auto"`` over that many tasks at a time
    (``jmeta.meta_train_step(chunk_size=...)``: a sequential map over chunks)."""
    from benchmarks.peers import get_builder
    from benchmarks.peers.workloads import get_workload

    workload = get_workload("omniglot_5w1s").replace(width=width)
    out: dict[str, Callable] = {"PyTorch per-task loop": get_builder("torch_loop")(
        workload, num_tasks, "cpu")}  # fmt: skip
    for impl in impls:
        if impl == "xla":  # grouped convolutions: > 240 s per meta-step on this CPU
            continue
        step = get_builder("jmeta")(workload, num_tasks, "cpu", conv_impl=impl)
        step.compile()
        out[f"jmeta conv_impl={impl}"] = step
    for chunk in chunk_sizes:
        step = get_builder("jmeta")(workload, num_tasks, "cpu", conv_impl="auto", chunk_size=chunk)
        step.compile()
        out[f"jmeta conv_impl=auto chunk_size={chunk}"] = step
    return out


def protonet_contenders(
    ways: int, shots: int, queries: int, num_tasks: int, width: int, impls: tuple[str, ...]
) -> tuple[dict[str, Callable], dict[str, float]]:
    """A ProtoNets training step in jmeta (as ``jmeta train`` builds it) and in PyTorch.

    Returns the contenders and each one's first loss (the same parameters and
    tasks for all: a check that they compute the same thing).
    """
    import jax
    import optax
    import torch
    import torch.nn.functional as F

    import jmeta
    from benchmarks.peers.torch_common import conv4_embedding

    images = np.random.default_rng(0).integers(0, 256, (max(ways, 20), 20, 28, 28, 1), np.uint8)
    tasks = jax.jit(
        lambda key: jmeta.tasks.sample_tasks(
            jmeta.tasks.few_shot,
            key,
            num_tasks,
            data=images,
            ways=ways,
            shots=shots,
            queries=queries,
        )  # fmt: skip
    )(jax.random.key(1))
    init = jmeta.models.conv4(None, channels=width).init(jax.random.key(0))
    out: dict[str, Callable] = {}
    first: dict[str, float] = {}

    tparams = {k: torch.nn.Parameter(v) for k, v in torch_conv4_params(init).items()}
    optimizer = torch.optim.Adam(tparams.values(), lr=1e-3)
    to_torch = lambda a: torch.from_numpy(np.array(a))  # noqa: E731 (a writable copy)
    sx, qx = (to_torch(np.asarray(b.x).transpose(0, 1, 4, 2, 3)) for b in tasks)
    sy, qy = (to_torch(np.asarray(b.y).astype(np.int64)) for b in tasks)

    def torch_loss():
        total = 0.0
        for t in range(num_tasks):
            support, query = conv4_embedding(tparams, sx[t]), conv4_embedding(tparams, qx[t])
            one_hot = F.one_hot(sy[t], ways).to(support.dtype)
            prototypes = (one_hot.T @ support) / one_hot.sum(0).clamp_min(1.0)[:, None]
            sq = (
                query.square().sum(1)[:, None]
                - 2.0 * query @ prototypes.T
                + prototypes.square().sum(1)[None, :]
            )
            total = total + F.cross_entropy(-sq, qy[t])
        return total / num_tasks

    def torch_step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch_loss()
        loss.backward()
        optimizer.step()
        return loss

    with torch.no_grad():
        first["PyTorch"] = float(torch_loss())
    out["PyTorch"] = torch_step

    for impl in impls:
        model = jmeta.models.conv4(None, channels=width, conv_impl=impl)
        learner = jmeta.protonet(model.apply, shots=shots)
        step = jmeta.meta_train_step(learner, optax.flatten(optax.adam(1e-3)))
        update = jmeta.jit_step(step)
        holder = {"state": step.init(learner.init(init))}
        key = jax.random.key(2)

        def run(update=update, holder=holder, key=key):
            holder["state"], metrics = update(holder["state"], tasks, key)
            jax.block_until_ready((holder["state"], metrics))
            return metrics

        name = f"jmeta conv_impl={impl}"
        first[name] = float(run()["loss"])
        out[name] = run
    return out, first


# ----------------------------------------------------------------------------- timing


def interleaved(contenders: dict[str, Callable], rounds: int, seed: int = 0) -> dict[str, Any]:
    """Two warm-up calls each, then ``rounds`` rounds of one call each in a random order."""
    for fn in contenders.values():
        fn()
        fn()
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    loads = [load_average()]
    order = random.Random(seed)
    for _ in range(rounds):
        for name in order.sample(list(contenders), len(contenders)):
            start, start_cpu = time.perf_counter(), time.process_time()
            contenders[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
        loads.append(load_average())
    return {"wall_s": wall, "cpu_s": cpu, "load_1min": loads}


def summarize(timing: dict[str, Any], reference: str) -> dict[str, dict[str, float]]:
    """Per contender: median wall and CPU seconds, and speed relative to ``reference``."""
    wall, cpu = timing["wall_s"], timing["cpu_s"]
    ref = np.asarray(wall[reference])
    out = {}
    for name, samples in wall.items():
        s = np.asarray(samples)
        out[name] = {
            "median_s": float(np.median(s)),
            "p10_s": float(np.percentile(s, 10)),
            "p90_s": float(np.percentile(s, 90)),
            "median_cpu_s": float(np.median(cpu[name])),
            # per round: reference time / this time (> 1: faster than the reference)
            "speed_vs_reference": float(np.median(ref / s)),
        }
    return out


# ----------------------------------------------------------------------------- report


def run_targets(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    width = 8 if quick else 64
    impls = tuple(args.impls)
    cases: list[tuple[str, str, Callable[[], Any], str]] = []
    for target in args.targets:
        if target == "conv":
            for n in (6, 10) if quick else (120, 600):
                cases.append((
                    "conv", f"Conv4-{width} embedding forward+backward, {n} images 28x28x1, "
                    "shared weights", lambda n=n: (conv_contenders(n, width, impls), None),
                    "PyTorch",
                ))  # fmt: skip
        elif target == "maml":
            tasks = 2 if quick else 32
            title = (f"second-order MAML, Omniglot 5-way 1-shot, 15 queries, 1 inner step, "
                     f"{tasks} tasks, Conv4-{width}")  # fmt: skip
            chunks = tuple(c for c in args.chunk_sizes if tasks % c == 0)
            build = lambda t=tasks, c=chunks: (maml_contenders(t, width, impls, c), None)  # noqa: E731
            cases.append(("maml", title, build, "PyTorch per-task loop"))
        elif target == "protonet":
            episodes = [(3, 2, 2, 1)] if quick else [(60, 5, 5, 1)]
            if args.protonet_tasks and not quick:
                episodes.append((5, 1, 1, args.protonet_tasks))
            for ways, shots, queries, num in episodes:
                images = num * ways * (shots + queries)
                title = (f"ProtoNets training step, {num} task(s) of {ways}-way {shots}-shot, "
                         f"{queries} queries per class ({images} images), Conv4-{width}, "
                         "Adam 1e-3")  # fmt: skip
                build = lambda a=(ways, shots, queries, num): protonet_contenders(*a, width, impls)  # noqa: E731
                cases.append(("protonet", title, build, "PyTorch"))
    results = []
    for target, title, build, reference in cases:
        load_before = load_average()
        start = time.perf_counter()
        contenders, first = build()
        setup_s = time.perf_counter() - start
        timing = interleaved(contenders, args.rounds)
        results.append({
            "target": target, "case": title, "reference": reference, "setup_s": setup_s,
            "load_1min_before": load_before, "summary": summarize(timing, reference),
            "first_loss": first, **timing,
        })  # fmt: skip
        print(format_case(results[-1]), flush=True)
    return {"cases": results}


def format_case(case: dict[str, Any]) -> str:
    loads = case["load_1min"]
    lines = [
        f"**{case['case']}** (1-minute load average {case['load_1min_before']:.1f} before, "
        f"{min(loads):.1f}-{max(loads):.1f} during the rounds)",
        "",
        "| implementation | ms / call (median) | p10-p90 | CPU ms / call "
        f"| speed vs {case['reference']} |" + (" first loss |" if case["first_loss"] else ""),
        "|---|---:|---:|---:|---:|" + ("---:|" if case["first_loss"] else ""),
    ]
    for name, s in case["summary"].items():
        row = (
            f"| {name} | {1e3 * s['median_s']:.1f} | {1e3 * s['p10_s']:.1f}-{1e3 * s['p90_s']:.1f} "
            f"| {1e3 * s['median_cpu_s']:.0f} | {s['speed_vs_reference']:.2f}x |"
        )
        if case["first_loss"]:
            row += f" {case['first_loss'][name]:.5f} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: Path, label: str | None) -> Path:
    stem = f"cpu_targets_{slug(report['cpu'])}_{report['date']}" + (f"_{label}" if label else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1))
    v = report["versions"]
    lines = [
        f"### CPU targets on {report['cpu']} ({report['cores']} cores), {report['date']}",
        "",
        f"Commit {report['commit']}; {', '.join(f'{k} {val}' for k, val in v.items())}; float32; "
        f"{report['cores_used']} of the cores used, PyTorch threads {report['torch_threads']}, "
        f"XLA:CPU's default threads"
        + (f", XLA_FLAGS `{report['xla_flags']}`" if report.get("xla_flags") else "")
        + "; "
        f"{report['rounds']} interleaved rounds per case, medians; 1-minute load average "
        f"{report['load_1min_start']:.1f} at the start, {report['load_1min_end']:.1f} at the end. "
        f"`speed vs` is the median over rounds of the reference's time / this row's time "
        f"(> 1: faster than PyTorch). Command: `{report['command']}`.",
        "",
    ]
    lines += [format_case(case) for case in report["cases"]]
    (out_dir / f"{stem}.md").write_text("\n".join(lines))
    return out_dir / f"{stem}.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--impls", nargs="+", choices=JMETA_IMPLS, default=list(JMETA_IMPLS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--protonet-tasks", type=int, default=0,
        help="also time this many 5-way 1-shot tasks (trainer's default: 32)",
    )  # fmt: skip
    parser.add_argument(
        "--chunk-sizes", type=int, nargs="*", default=[],
        help="maml: also jmeta's auto step over this many tasks at a time (a sequential map)",
    )  # fmt: skip
    parser.add_argument(
        "--cores", type=int, default=None,
        help="pin to this many cores (PyTorch then uses as many threads): with 1, a busy "
        "machine slows both frameworks alike, while a multi-threaded PyTorch waits at every "
        "OpenMP barrier for a thread that is not running",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--label", default=None, help="suffix of the result files' names")
    parser.add_argument("--out", type=Path, default=RESULTS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.cores is not None:  # before JAX and PyTorch start their threads
        allowed = sorted(os.sched_getaffinity(0))
        if not 1 <= args.cores <= len(allowed):
            parser.error(f"--cores {args.cores}: {len(allowed)} CPUs are available")
        os.sched_setaffinity(0, allowed[: args.cores])

    import torch

    if args.cores is not None:
        torch.set_num_threads(args.cores)

    report: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "cores_used": len(os.sched_getaffinity(0)),
        "date": datetime.date.today().isoformat(),
        "commit": git_commit(),
        "versions": versions(),
        "precision": "float32",
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "torch_threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "command": " ".join(["python -m benchmarks.cpu_targets", *argv]),
        "load_1min_start": load_average(),
    }
    report.update(run_targets(args))
    report["load_1min_end"] = load_average()
    path = write_report(report, args.out, args.label)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
