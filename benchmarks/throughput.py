"""Meta-training throughput: jmeta against plain JAX and the PyTorch libraries.

Same work, same machine, one run. Every peer runs the same MAML meta-step
(:mod:`benchmarks.peers.workloads`) on the same synthetic batch; a missing
optional peer (``torch``, ``higher``, ``torchopt``, ``learn2learn``) is
skipped with a note. Per case it reports the median ms per meta-step after
warm-up (with p10-p90), tasks/s, compile (or first-call) time and peak memory,
and per workload the ratio of jmeta's throughput to each peer's. It writes
``throughput_<machine>_<date>.json`` (:func:`benchmarks.machine.result_stem`), a
markdown table and a PNG bar chart.

Peak memory: for JAX, XLA's compiled memory analysis of the step (arguments +
outputs + temporaries - donated aliases: the program's device footprint); for
PyTorch on a GPU, ``torch.cuda.max_memory_allocated`` around the case; on the
CPU, each case runs in its own process and reports that process's peak RSS.

Usage::

    python -m benchmarks.throughput --quick          # about a minute
    python -m benchmarks.throughput                  # the headline suite
    python -m benchmarks.throughput --suite full     # + sweeps and variants
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import machine
from benchmarks.peers.workloads import get_workload

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
JAX_PEERS = ("jmeta", "plain_jax")


@dataclasses.dataclass(frozen=True)
class Case:
    """One timed configuration."""

    peer: str
    workload: str
    batch: int
    inner_steps: int = 1
    first_order: bool = False
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        opts = ", ".join(
            f"{k}={v}".replace("xla_flags=--xla_gpu_", "XLA ") for k, v in self.options
        )
        return f"{self.peer} ({opts})" if opts else self.peer

    @property
    def key(self) -> tuple:
        """Cases with the same key do the same work and are compared."""
        return (self.workload, self.batch, self.inner_steps, self.first_order)


def variants(workload: str, batch: int, **kw) -> list[Case]:
    """jmeta's conv implementations x precisions (the record of what each change did)."""
    return [
        Case("jmeta", workload, batch, options=(("conv_impl", impl), ("precision", prec)), **kw)
        for impl in ("xla", "im2col")
        for prec in ("float32", "bfloat16")
    ]


def peers(workload: str, batch: int, names: tuple[str, ...], **kw) -> list[Case]:
    return [Case(name, workload, batch, **kw) for name in names]


ALL_TORCH = ("torch_loop", "torch_higher", "torch_torchopt", "torch_func", "learn2learn_maml")


def suite(name: str) -> list[Case]:
    """The cases of a suite, cheapest and most important first."""
    if name == "quick":
        return [
            *peers("sinusoid", 25, ("jmeta", "plain_jax", "torch_func", "torch_loop")),
            *peers("omniglot_5w1s", 2, ("jmeta", "plain_jax", "torch_func", "torch_loop")),
        ]
    headline = [
        *peers("omniglot_5w1s", 32, ("jmeta", "plain_jax", *ALL_TORCH)),
        *peers(
            "omniglot_20w1s", 16, ("jmeta", "plain_jax", "torch_func", "torch_loop"), inner_steps=5
        ),
        *peers("sinusoid", 25, ("jmeta", "plain_jax", *ALL_TORCH)),
    ]
    if name == "headline":
        return headline
    if name == "cpu":  # this CPU; grouped convolutions (plain JAX, conv_impl=xla) last: see below
        xla = (("conv_impl", "xla"),)
        return [
            *peers("sinusoid", 25, ("jmeta", "plain_jax", *ALL_TORCH)),
            *peers("omniglot_5w1s", 32, ("jmeta", *ALL_TORCH)),
            *peers("omniglot_20w1s", 16, ("jmeta", "torch_func", "torch_loop"), inner_steps=5),
            # XLA:CPU runs the grouped convolutions that vmap makes of per-task kernels in
            # minutes per meta-step at these sizes; run with a --group-timeout.
            Case("jmeta", "omniglot_5w1s", 32, options=xla),
            Case("plain_jax", "omniglot_5w1s", 32),
        ]
    if name == "gpu":  # one lease: the most important first, OOM-prone last
        jm = lambda impl, prec: (("conv_impl", impl), ("precision", prec))  # noqa: E731
        bf16 = jm("im2col", "bfloat16")
        return [
            Case("jmeta", "omniglot_5w1s", 32),
            Case("jmeta", "omniglot_5w1s", 32, options=bf16),
            Case("plain_jax", "omniglot_5w1s", 32),
            *peers("omniglot_5w1s", 32, ALL_TORCH),
            Case("jmeta", "omniglot_20w1s", 16, inner_steps=5),
            Case("jmeta", "omniglot_20w1s", 16, inner_steps=5, options=bf16),
            *peers("omniglot_20w1s", 16, ("plain_jax", "torch_func", "torch_loop"), inner_steps=5),
            Case("jmeta", "omniglot_5w1s", 128, options=bf16),
            Case("jmeta", "omniglot_5w1s", 512, options=bf16),
            *peers("omniglot_5w1s", 128, ("plain_jax", "torch_func")),
            Case("jmeta", "omniglot_5w1s", 32, options=jm("xla", "float32")),
            Case("jmeta", "omniglot_5w1s", 128, options=jm("im2col", "float32")),
            *peers("sinusoid", 25, ("jmeta", "plain_jax", "torch_func", "torch_loop")),
            Case("jmeta", "omniglot_5w1s", 512, options=jm("im2col", "float32")),
            Case("jmeta", "omniglot_5w1s", 512, options=(*bf16, ("chunk_size", 128))),
            Case("jmeta", "miniimagenet_5w1s", 32, options=bf16),
            *peers("miniimagenet_5w1s", 32, ("jmeta", "plain_jax", "torch_func")),
            Case("jmeta", "omniglot_5w1s", 32, options=jm("xla", "bfloat16")),
            *peers("omniglot_5w1s", 32, ("jmeta", "plain_jax", "torch_func"), first_order=True),
            *peers("omniglot_5w1s", 32, ("jmeta", "plain_jax", "torch_func"), inner_steps=5),
            Case("jmeta", "omniglot_20w1s", 16, inner_steps=5, options=(("remat", True),)),
            *peers("omniglot_5w1s", 512, ("torch_func", "plain_jax")),
        ]
    if name == "gpu2":  # a second lease: what the first one left out, and inner-loop fusion
        bf16 = (("conv_impl", "im2col"), ("precision", "bfloat16"))
        while_graphs = (
            "xla_flags",
            "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONDITIONAL,WHILE",
        )
        return [
            Case("jmeta", "omniglot_20w1s", 16, inner_steps=5, options=(*bf16, ("unroll", True))),
            Case("jmeta", "omniglot_20w1s", 16, inner_steps=5, options=(*bf16, while_graphs)),
            Case("jmeta", "omniglot_5w1s", 32, first_order=True, options=bf16),
            Case("jmeta", "omniglot_5w1s", 32, inner_steps=5, options=bf16),
            *peers("omniglot_5w1s", 32, ("jmeta", "plain_jax"), first_order=True),
            *peers("omniglot_5w1s", 32, ("jmeta", "plain_jax"), inner_steps=5),
            Case("jmeta", "omniglot_20w1s", 16, inner_steps=5, options=(*bf16, ("remat", True))),
            Case(
                "jmeta",
                "omniglot_5w1s",
                32,
                options=(("conv_impl", "xla"), ("precision", "bfloat16")),
            ),
            Case("plain_jax", "omniglot_5w1s", 512),
        ]
    raise ValueError(f"unknown suite {name!r}; known: quick, headline, full, gpu, gpu2")


# ----------------------------------------------------------------------------- worker


def run_case(
    case: Case, device: str | None, warmup: int, repeats: int, budget_s: float = 5.0
) -> dict[str, Any]:
    """Build, compile, time and measure one case in this process; never raises."""
    from benchmarks.peers import PeerUnavailable, get_builder
    from benchmarks.peers.timing import process_peak_rss_bytes, time_step

    workload = get_workload(
        case.workload, inner_steps=case.inner_steps, first_order=case.first_order
    )
    record: dict[str, Any] = {
        **dataclasses.asdict(case),
        "label": case.label,
        "options": dict(case.options),
    }
    try:
        build = get_builder(case.peer)
    except PeerUnavailable as err:
        return {**record, "status": "skipped", "reason": str(err)}
    torch = sys.modules.get("torch")
    step = None
    try:
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        options = {k: v for k, v in case.options if k != "xla_flags"}  # set by the driver
        step = build(workload, case.batch, device, **options)
        footprint = step.compile() if hasattr(step, "compile") else None  # JAX: AOT compile
        compile_s = time.perf_counter() - start
        probe = time.perf_counter()
        step()  # first call after compilation: warms caches and allocators
        per_step = time.perf_counter() - probe
        repeats = max(
            3, min(repeats, int(budget_s / max(per_step, 1e-6)))
        )  # slow peers: fewer repeats
        timing = time_step(step, warmup=warmup, repeats=repeats)
        timing["repeats"] = repeats
        if footprint is None:
            footprint = _torch_peak(torch)
        record.update(
            status="ok",
            device=step.device,
            **timing,
            build_and_compile_s=compile_s,
            tasks_per_s=case.batch / (timing["median_ms"] / 1e3),
            first_losses=[float(x) for x in getattr(step, "first_losses", [])],
            peak_bytes=footprint,
            process_peak_rss_bytes=process_peak_rss_bytes(),
        )
    except Exception as err:  # report and go on with the sweep
        text = f"{type(err).__name__}: {err}"
        oom = any(
            s in text.lower() for s in ("out of memory", "resource_exhausted", "resource exhausted")
        )
        record.update(
            status="oom" if oom else "error",
            error=text[-1500:],
            traceback=traceback.format_exc()[-3000:],
        )
    finally:
        del step
        gc.collect()
    return record


def _torch_peak(torch) -> int | None:
    if torch is not None and torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return None


def worker(args: argparse.Namespace) -> int:
    cases = [
        Case(**{**c, "options": tuple(map(tuple, c["options"]))})
        for c in json.loads(Path(args.cases).read_text())
    ]
    with open(args.records, "a") as out:
        for case in cases:
            if args.stop_at and time.time() > args.stop_at:
                record = {**dataclasses.asdict(case), "label": case.label,
                          "options": dict(case.options), "status": "skipped",
                          "reason": "not run: time budget spent"}  # fmt: skip
            else:
                record = run_case(case, args.device, args.warmup, args.repeats)
            out.write(json.dumps(record) + "\n")
            out.flush()
            status = record["status"]
            detail = (
                f"{record['tasks_per_s']:,.0f} tasks/s"
                if status == "ok"
                else record.get("error") or record.get("reason")
            )
            print(
                f"  {case.label:40s} {case.workload} T={case.batch} K={case.inner_steps}: "
                f"{status}: {detail}",
                flush=True,
            )
    return 0


# ----------------------------------------------------------------------------- driver


def run_group(cases: list[Case], args: argparse.Namespace, records_path: Path) -> None:
    """Run ``cases`` in worker processes; a crashed worker is restarted after its case.

    All cases of a group share the worker's ``XLA_FLAGS`` (their ``xla_flags`` option).
    """
    pending = list(cases)
    while pending:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump([dataclasses.asdict(c) for c in pending], f)
        done_before = _count_lines(records_path)
        cmd = [sys.executable, "-m", "benchmarks.throughput", "--worker", "--cases", f.name,
               "--records", str(records_path), "--warmup", str(args.warmup),
               "--repeats", str(args.repeats),
               "--stop-at", str(args.stop_at or 0)]  # fmt: skip
        if args.device:
            cmd += ["--device", args.device]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        flags = dict(cases[0].options).get("xla_flags")
        if flags:
            env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS"), flags]))
        try:
            timeout = args.group_timeout
            if args.stop_at:  # the case in flight may finish; then the worker skips the rest
                timeout = min(timeout, max(args.stop_at - time.time(), 0) + args.grace_s)
            proc = subprocess.run(
                cmd, cwd=REPO, env=env, timeout=timeout, stderr=subprocess.PIPE, text=True
            )
            failed = proc.returncode != 0
            tail = proc.stderr[-1500:]
        except subprocess.TimeoutExpired:
            failed, tail = True, f"worker timed out after {args.group_timeout} s"
        finished = _count_lines(records_path) - done_before
        pending = pending[finished:]
        if failed and pending:  # the case in flight crashed the worker: record it, go on
            crashed = pending.pop(0)
            record = {**dataclasses.asdict(crashed), "label": crashed.label,
                      "options": dict(crashed.options), "status": "error",
                      "error": f"worker died: {tail}"}  # fmt: skip
            with open(records_path, "a") as out:
                out.write(json.dumps(record) + "\n")
            print(f"  {crashed.label}: worker died", flush=True)
        elif not failed:
            break


def _count_lines(path: Path) -> int:
    return sum(1 for _ in open(path)) if path.exists() else 0


def machine_name(device: str | None) -> str:
    """The machine as a file-name slug: the GPU's (``nvidia-h100-80gb-hbm3``) unless
    ``device`` is ``"cpu"`` or there is none, else the CPU's (``amd-epyc``)."""
    return machine.slug(machine.machine(device or "auto"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite", default="headline", choices=("quick", "headline", "cpu", "full", "gpu", "gpu2")
    )
    parser.add_argument(
        "--quick", action="store_true", help="alias for --suite quick (about a minute)"
    )
    parser.add_argument("--peers", nargs="*", help="only these peers")
    parser.add_argument("--device", default=None, help="cpu, cuda/gpu, or automatic")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--group-timeout", type=float, default=3600)
    parser.add_argument(
        "--budget-s",
        type=float,
        nargs="+",
        default=None,
        help="start no case after this many seconds in the JAX group, then the PyTorch group "
        "(one number for both)",
    )
    parser.add_argument(
        "--grace-s", type=float, default=90, help="time a case in flight may overrun the budget"
    )
    parser.add_argument(
        "--grouped", action="store_true", help="one process per framework (the GPU default)"
    )
    parser.add_argument("--stop-at", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--report-from", type=Path, help="only write the report of a records .jsonl file"
    )
    parser.add_argument("--machine", help="with --report-from: the machine's name")
    parser.add_argument("--versions", help="with --report-from: JSON of package versions")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cases", help=argparse.SUPPRESS)
    parser.add_argument("--records", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.report_from:  # e.g. the records of a run cut short by a lease's end
        device = "cpu" if args.device == "cpu" else "gpu"
        name = args.machine or machine_name(device)
        stem = args.out / f"throughput_{name}_{datetime.date.today().isoformat()}"
        versions = json.loads(args.versions or "{}")
        write_report(args.report_from, stem, device, args.suite, float("nan"), versions, name)
        return 0
    name = "quick" if args.quick else args.suite
    on_cpu = args.device == "cpu" or machine.gpu_name() is None
    device = "cpu" if on_cpu else "gpu"
    stem = args.out / machine.result_stem("throughput", device)
    args.warmup = args.warmup or (2 if on_cpu or name == "quick" else 3)
    args.repeats = args.repeats or (3 if on_cpu or name == "quick" else 10)
    cases = [c for c in suite(name) if not args.peers or c.peer in args.peers]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = stem.with_name(stem.name + ("_quick" if name == "quick" else ""))
    records_path = stem.with_suffix(".jsonl")
    records_path.unlink(missing_ok=True)
    print(f"{len(cases)} cases on {machine.headline(device)}", flush=True)
    started = time.time()
    if (
        on_cpu and not args.grouped
    ):  # one process per case: per-case peak RSS, no thread-pool fights
        for case in cases:
            run_group([case], args, records_path)
    else:  # one process per framework, JAX first
        jax_cases = [c for c in cases if c.peer in JAX_PEERS]
        torch_cases = [c for c in cases if c.peer not in JAX_PEERS]
        budgets = (args.budget_s or [0]) * 2
        for group, budget in zip((jax_cases, torch_cases), budgets[:2], strict=True):
            args.stop_at = time.time() + budget if budget else 0
            for flags in dict.fromkeys(dict(c.options).get("xla_flags") for c in group):
                run_group(
                    [c for c in group if dict(c.options).get("xla_flags") == flags],
                    args,
                    records_path,
                )
    write_report(records_path, stem, device, name, time.time() - started, _versions())
    records_path.unlink()
    return 0


def write_report(
    records_path: Path,
    stem: Path,
    device: str,
    suite_name: str,
    wall_s: float,
    versions: dict,
    name: str | None = None,
) -> None:
    """JSON, markdown and PNG chart from the records of a run on this machine's
    ``device`` (``"cpu"``: the CPU; else its GPU), named ``name`` (default: the
    machine's)."""
    from benchmarks.report import throughput_chart, throughput_markdown

    records = [json.loads(line) for line in open(records_path)]
    report = {"machine": name or machine_name(device), "description": machine.headline(device),
              "details": machine.describe(), "suite": suite_name, "wall_s": wall_s,
              "versions": versions, "records": records}  # fmt: skip
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    markdown = throughput_markdown(report)
    stem.with_suffix(".md").write_text(markdown)
    throughput_chart(report, stem.with_suffix(".png"))
    print(markdown)


def _versions() -> dict[str, str]:
    return machine.versions(("jax", "jaxlib", "torch", "higher", "torchopt", "learn2learn"))


if __name__ == "__main__":
    sys.exit(main())
