"""Time one peer on one workload; meant to run in its own process.

    python -m benchmarks.peers.run_one --peer plain_jax --workload omniglot_5w1s --batch 32 --json
    python -m benchmarks.peers.run_one --list

With ``--json`` the last stdout line is one JSON record (see
:func:`benchmarks.peers.timing.run_isolated`); otherwise a short summary.
Unavailable peers give ``status: "skipped"`` and exit 0; an out-of-memory
failure gives ``status: "oom"``, any other failure ``status: "error"`` (exit 1).

``--threads N`` (CPU runs) pins the process to its first N allowed cores
before any framework is imported, so PyTorch's OpenMP pool and XLA's Eigen
pool both size themselves to N; PyTorch is also told ``set_num_threads(N)``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import traceback
from typing import Any

from benchmarks.peers import PEERS, PeerUnavailable, get_builder
from benchmarks.peers.timing import (
    jax_peak_bytes,
    process_peak_rss_bytes,
    time_step,
    torch_peak_bytes,
)
from benchmarks.peers.workloads import WORKLOADS, get_workload

_VERSIONED = ("jax", "jaxlib", "optax", "torch", "higher", "torchopt", "learn2learn", "numpy")


def _versions() -> dict[str, str]:
    """Versions of the relevant packages this process actually imported."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        if name in sys.modules:
            try:
                out[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                pass
    return out


def _device_info(step: Any) -> dict[str, Any]:
    """Peak memory and a device description for a built step."""
    if hasattr(step, "_jax_device"):  # plain_jax and jmeta
        device = step._jax_device
        return {"device_kind": device.device_kind, "device_peak_bytes": jax_peak_bytes(device)}
    import torch

    device = step.torch_device
    info: dict[str, Any] = {"device_peak_bytes": torch_peak_bytes(device)}
    if device.type == "cuda":
        info["device_kind"] = torch.cuda.get_device_name(device)
    else:
        info["device_kind"] = platform.processor() or platform.machine()
        info["torch_threads"] = torch.get_num_threads()
    return info


def limit_threads(threads: int) -> None:
    """Pin this process to ``threads`` cores (call before importing frameworks)."""
    if not hasattr(os, "sched_setaffinity"):
        raise RuntimeError("--threads needs os.sched_setaffinity (Linux)")
    cores = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cores)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, time and describe one peer; never raises."""
    workload = get_workload(
        args.workload, inner_steps=args.inner_steps, first_order=args.first_order
    )
    batch = args.batch if args.batch is not None else workload.meta_batch
    record: dict[str, Any] = {
        "peer": args.peer,
        "workload": workload.name,
        "batch_size": batch,
        "inner_steps": workload.inner_steps,
        "first_order": workload.first_order,
        "dtype": args.dtype,
        "threads": args.threads,
        "options": args.option,
    }
    try:
        builder = get_builder(args.peer)
    except PeerUnavailable as err:
        return {**record, "status": "skipped", "reason": str(err), "versions": _versions()}
    try:
        if args.threads is not None and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(args.threads)
        step = builder(
            workload, batch, args.device, seed=args.seed, dtype=args.dtype, **args.option
        )
        timing = time_step(step, warmup=args.warmup, repeats=args.repeats)
    except Exception as err:  # report, don't crash the sweep
        text = f"{type(err).__name__}: {err}"
        oom = "out of memory" in text.lower() or "resource_exhausted" in text.lower()
        return {
            **record,
            "status": "oom" if oom else "error",
            "error": text[-2000:],
            "traceback": traceback.format_exc()[-4000:],
            "versions": _versions(),
        }
    return {
        **record,
        "status": "ok",
        "device": step.device,
        **timing,
        "tasks_per_s": batch / (timing["median_ms"] / 1e3),
        **_device_info(step),
        "process_peak_rss_bytes": process_peak_rss_bytes(),
        "versions": _versions(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list peers (importing each) and exit")
    parser.add_argument("--peer", choices=PEERS)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="omniglot_5w1s")
    parser.add_argument(
        "--batch", type=int, default=None, help="tasks per meta-step (default: the workload's)"
    )
    parser.add_argument("--inner-steps", type=int, default=None)
    parser.add_argument("--first-order", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda/gpu, or omit for automatic")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU cores/threads to use (default: all)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON record")
    parser.add_argument(
        "--option",
        action="append",
        type=parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="peer-specific option, e.g. --option conv_impl=im2col (jmeta); repeatable",
    )
    args = parser.parse_args(argv)
    args.option = dict(args.option)

    if args.list:
        from benchmarks.peers import available_peers, skipped_peers

        listing = {"available": list(available_peers()), "skipped": skipped_peers()}
        print(
            json.dumps(listing) if args.json else "\n".join(f"{k}: {v}" for k, v in listing.items())
        )
        return 0
    if args.peer is None:
        parser.error("--peer is required (or --list)")
    if args.threads is not None:
        limit_threads(args.threads)

    record = run(args)
    if args.json:
        print(json.dumps(record), flush=True)
    elif record["status"] == "ok":
        print(
            f"{record['peer']:16s} {workload_label(record)}: {record['median_ms']:.1f} ms/step "
            f"(p10 {record['p10_ms']:.1f}, p90 {record['p90_ms']:.1f}), "
            f"{record['tasks_per_s']:.0f} tasks/s, first call {record['compile_or_first_call_s']:.1f} s"
        )
    else:
        print(
            f"{record['peer']}: {record['status']}: {record.get('reason') or record.get('error')}"
        )
    return 1 if record["status"] in ("error", "oom") else 0


def parse_option(text: str) -> tuple[str, Any]:
    """``"remat=true"`` -> ``("remat", True)``; numbers and booleans are parsed."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    lowered = value.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    try:
        return key, int(value)
    except ValueError:
        return key, value


def workload_label(record: dict[str, Any]) -> str:
    order = "1st" if record["first_order"] else "2nd"
    return f"{record['workload']} T={record['batch_size']} steps={record['inner_steps']} {order}"


if __name__ == "__main__":
    sys.exit(main())
