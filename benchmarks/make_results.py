"""Assemble ``benchmarks/RESULTS.md`` from the scripts' outputs in ``benchmarks/results/``.

Nothing in RESULTS.md is written by hand: the target table is computed from the
throughput JSON reports, and every other section is a script's markdown output,
included as written. Run after any benchmark: ``python -m benchmarks.make_results``.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import accuracy
from benchmarks.report import fmt_bytes

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: The section rendered from the result files in ``results/accuracy/`` (benchmarks/accuracy.py).
ACCURACY = "accuracy"

# (section title, file stem, command that regenerates it)
H100 = "throughput_nvidia-h100-80gb-hbm3_2026-11-26"
CPU_2026_11_26 = "x86-64-2-cores_2026-11-26"
SECTIONS = [
    ("Throughput on an H100, 2026-11-26, run 1", f"{H100}_1",
     "bash benchmarks/gpu_session.sh  # python -m benchmarks.throughput --suite gpu"),
    ("Throughput on an H100, 2026-11-26, run 2", f"{H100}_2",
     "SUITE=gpu2 bash benchmarks/gpu_session.sh"),
    ("Throughput on an H100, 2026-11-26, run 3 (jmeta and plain JAX only)", f"{H100}_3",
     "python -m benchmarks.throughput --suite gpu --peers jmeta plain_jax --budget-s 170"),
    ("Throughput on a 2-core x86-64 CPU, 2026-11-26", f"throughput_{CPU_2026_11_26}",
     "taskset -c 1 python -m benchmarks.throughput --suite cpu --group-timeout 240  # one core"),
    ("The default job's meta-step (sinusoid), 2-core x86-64 CPU, 2026-11-26",
     f"sinusoid_step_{CPU_2026_11_26}", "python -m benchmarks.sinusoid_step"),
    ("The default job's meta-step (sinusoid), the same CPU pinned to one core",
     f"sinusoid_step_{CPU_2026_11_26}_1core", "python -m benchmarks.sinusoid_step --cores 1"),
    ("The default job's meta-step (sinusoid), H100, 2026-11-26",
     "sinusoid_step_nvidia-h100-80gb-hbm3_2026-11-26",
     "python -m benchmarks.sinusoid_step  # on the lent H100"),
    ("Accuracy reproductions: sinusoid", "reproduce_sinusoid",
     "python -m benchmarks.reproduce --seeds 0"),
    ("Accuracy at convergence on minimal Omniglot", ACCURACY,
     "PYTHONPATH=$PWD python benchmarks/accuracy.py --only NAME  # then make_results"),
    ("Accuracy on minimal Omniglot after 300 meta-steps (a small-budget comparison of the "
     "algorithms, not convergence)", "omniglot_accuracy",
     "PYTHONPATH=$PWD python benchmarks/reproduce_omniglot.py"),
    ("Memory", "memory", "PYTHONPATH=$PWD python benchmarks/memory.py"),
    ("Mixed precision", "mixed_precision", "PYTHONPATH=$PWD python benchmarks/mixed_precision.py"),
    ("Scaling over devices", "scaling", "PYTHONPATH=$PWD python benchmarks/scaling.py"),
    ("Task sampling speed", "sampling_speed", "python -m benchmarks.sampling_speed"),
    ("Data set loading speed", "datasets_speed", "python -m benchmarks.datasets_speed"),
]  # fmt: skip

# How a run was made, where its file cannot say it (written with the run, by the person who ran it).
NOTES = {
    "cpu_targets_amd-epyc_2026-12-01_idle": (
        "The idle-machine run (nothing else running; 1-minute load average 1.4-1.7, the "
        "benchmark's own two threads). Here PyTorch 2.13 is faster on every target: jmeta's "
        "`auto` reaches 0.58x on the 120-image Conv4 forward+backward, 0.50x on 600 images, "
        "0.69x on the second-order MAML step and 0.86x on the ProtoNets step, so none of "
        "issue 17's CPU targets is met. It also shows that `auto` (adaptive) is not the "
        "fastest choice everywhere on an idle CPU: on the 600-image shared-weight "
        "convolution `im2col` took 1,549 ms against auto's 1,786 ms, while auto was faster on "
        "the other three targets and used less CPU time on all but that one. The loaded-"
        "machine runs below favoured jmeta and should not be read as parity."
    ),
    "cpu_targets_amd-epyc_2026-12-01_1core": (
        "`+dirty`: benchmarks/make_results.py was being edited when this run read the commit; "
        "the code it measured (jmeta/, benchmarks/cpu_targets.py, benchmarks/peers/) is "
        "2ddb799's. Measured at the same time as other engineers' test runs (1-minute load "
        "average 9-19): single calls varied up to 3x (see p10-p90), so the per-round ratios "
        "and the CPU times are the numbers to read. jmeta's `auto` used less CPU time than "
        "`im2col` in every case (MAML: 9.0 s against 12.6 s per call, although its median wall "
        "time was longer)."
    ),
    "cpu_targets_amd-epyc_2026-12-01": (
        "Read with care: the machine was shared (1-minute load average 8-19 on 2 cores "
        "throughout), and a loaded machine hurts PyTorch's two OpenMP threads far more than "
        "XLA (PyTorch's per-task MAML loop took 91 s per meta-step here against about 2.3 s "
        "on the idle machine, using 35 s of CPU time per call). Pinned to one core with one "
        "PyTorch thread (`--cores 1`, same day and load; logs in /tmp, not kept), PyTorch was "
        "faster: Conv4 forward+backward 748 ms against jmeta auto's 1,228 ms (0.58x) on 120 "
        "images and 4,432 against 7,706 ms (0.59x) on 600 (a rerun on the other core: 0.54x and "
        "0.65x); the MAML step 0.54x and the ProtoNets step 0.96x (MAML's CPU time per call "
        "5.3 s PyTorch, 9.0 s auto, 12.6 s im2col, 13.7 s auto with `chunk_size=4`, a "
        "sequential map over chunks of tasks). "
        "XLA:CPU flags changed the one-core conv ratios within noise (`--xla_cpu_use_thunk_"
        "runtime=false` 0.52x/0.65x, `--xla_cpu_use_onednn=true` 0.50x/0.71x). Under this load "
        "`auto` was jmeta's fastest choice in every case (auto < xla < im2col in time on the "
        "shared-weight targets, auto < im2col on MAML); the idle run above found im2col "
        "faster on the 600-image convolution. Parity with PyTorch is not reached, and the "
        "two-core ratios here are not idle-machine numbers."
    ),
    f"throughput_{CPU_2026_11_26}": (
        "Measured pinned to one core (`taskset -c 1`) while other jobs used the other core; each "
        "case in its own process, 2 warm-up and 3 timed steps. The suite's Omniglot 5-way rows "
        "ran while the test suite also loaded the machine, so jmeta, the per-task PyTorch loop "
        "and TorchOpt were rerun together in one process at a quieter time (the `--worker` mode "
        "of the same script; their rows here, with the PyTorch rows' peak RSS from their own "
        "processes in the suite run); higher's and torch.func's 5-way rows are from "
        "the loaded run and pessimistic. The 20-way jmeta and torch.func cases overran the "
        "suite's 240 s limit per case and were rerun alone with 1 warm-up step. The sinusoid "
        "rows time 3 steps of about a millisecond and are dominated by noise (a rerun gave "
        "jmeta 35,444 and plain JAX 23,185 tasks/s); `benchmarks/sinusoid_step.py`, which "
        "interleaves rounds, is the comparison to read. On this CPU, `vmap` over per-task "
        "kernels turns `lax.conv` into grouped convolutions that XLA:CPU runs so slowly that "
        "neither plain JAX nor jmeta with `conv_impl=xla` finished a meta-step in 240 s; "
        "jmeta's default im2col convolutions run it in about 10 s. PyTorch's per-task loops "
        "(oneDNN convolutions, one task at a time, a small working set) are still 2-3x faster "
        "than jmeta on one CPU core, whose 32-task im2col patches need 4.3 GiB; "
        "`chunk_size=4` gained about 15% in a separate run. These rows predate "
        '`conv_impl="auto"` (adaptive convolutions on CPU); the section '
        '"Targets on this CPU" above compares the current code with PyTorch.'
    ),
}

# The targets on an H100:
# (workload, inner steps, order, minimum tasks, tasks/s, memory ratio).
TARGETS = [
    ("Omniglot 5-way 1-shot, 32 tasks, 1 step", "omniglot_5w1s", 1, 32, 32, 4000, 0.5),
    ("Omniglot 20-way 1-shot, 16 tasks, 5 steps", "omniglot_20w1s", 5, 16, 16, 600, 0.5),
    ("Omniglot 5-way 1-shot, 128 tasks or more, 1 step", "omniglot_5w1s", 1, 128, None, 6000, None),
]


def gpu_records() -> list[dict]:
    """Every GPU throughput record, each with ``run``: its file's date and run number
    (``throughput_<gpu>_<date>[_<n>]``)."""
    records = []
    for path in sorted(RESULTS.glob("throughput_nvidia-*.json")):
        date, _, number = path.stem.split("_", 2)[2].partition("_")
        run = date + (f" run {number}" if number else "")
        records += [{**r, "run": run} for r in json.loads(path.read_text())["records"]]
    return records


def targets_table(records: list[dict]) -> list[str]:
    ok = [r for r in records if r["status"] == "ok" and not r["first_order"]]
    lines = [
        "| target (second order) | required | best jmeta | configuration | torch.func "
        "| plain JAX | jmeta memory / torch.func memory |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for title, workload, steps, lo, hi, need, mem_ratio in TARGETS:

        def match(r, peer, workload=workload, steps=steps, lo=lo, hi=hi):
            return (r["peer"] == peer and r["workload"] == workload and r["inner_steps"] == steps
                    and r["batch"] >= lo and (hi is None or r["batch"] <= hi))  # fmt: skip

        best = max(
            (r for r in ok if match(r, "jmeta")), key=lambda r: r["tasks_per_s"], default=None
        )
        if best is None:
            continue
        same = [
            r
            for r in ok
            if r["batch"] == best["batch"]
            and r["workload"] == workload
            and r["inner_steps"] == steps
        ]
        func = next((r for r in same if r["peer"] == "torch_func"), None)
        plain = next((r for r in same if r["peer"] == "plain_jax"), None)
        memory = "-"
        if mem_ratio is not None and func and best.get("peak_bytes") and func.get("peak_bytes"):
            ratio = best["peak_bytes"] / func["peak_bytes"]
            memory = (
                f"{fmt_bytes(best['peak_bytes'])} / {fmt_bytes(func['peak_bytes'])} = "
                f"{ratio:.2f} (need <= {mem_ratio})"
            )
        config = ", ".join(f"{k}={v}" for k, v in best["options"].items()) or "defaults"
        config += f"; {best['batch']} tasks; {best['run']}"
        met = "met" if best["tasks_per_s"] >= need else "not met"

        def rate(r):
            return f"{r['tasks_per_s']:,.0f} ({r['run']})" if r else "-"

        lines.append(
            f"| {title} | {need:,} | **{best['tasks_per_s']:,.0f}** ({met}) | {config} "
            f"| {rate(func)} | {rate(plain)} | {memory} |"
        )
    return lines


def cpu_target_files() -> list[Path]:
    """The CPU target reports (``benchmarks/cpu_targets.py``), newest first."""
    return sorted(RESULTS.glob("cpu_targets_*.json"), key=lambda p: p.stem, reverse=True)


def cpu_targets_table(path: Path) -> list[str]:
    """Issue 17's CPU targets from one report: jmeta's default against PyTorch."""
    report = json.loads(path.read_text())
    lines = [
        "| target | PyTorch ms | jmeta (`conv_impl=auto`) ms | speed vs PyTorch | met | "
        "jmeta before (`im2col`) ms |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for case in report["cases"]:
        summary = case["summary"]
        ref, auto = summary[case["reference"]], summary.get("jmeta conv_impl=auto")
        if auto is None:
            continue
        before = summary.get("jmeta conv_impl=im2col")
        before_ms = f"{1e3 * before['median_s']:,.0f}" if before else "-"
        ratio = auto["speed_vs_reference"]
        lines.append(
            f"| {case['case']} | {1e3 * ref['median_s']:,.0f} | {1e3 * auto['median_s']:,.0f} | "
            f"{ratio:.2f}x | {'yes' if ratio >= 1 else 'no'} | {before_ms} |"
        )
    return lines


def main() -> int:
    out = [
        "# jmeta benchmark results",
        "",
        "Generated by `python -m benchmarks.make_results` from the files in `benchmarks/results/`, "
        "each written by the script named in its section; nothing here is typed by hand. Timings "
        "compare implementations within one run on one machine; the three H100 runs of "
        "2026-11-26 were on separate machines of the same kind (NVIDIA H100 80GB HBM3). Result "
        "files are named `<what>_<machine>_<date>`; each states its machine, software versions "
        "and load average (`benchmarks/machine.py`).",
        "",
    ]
    records = gpu_records()
    if records:
        out += ["## Targets on an H100", "", *targets_table(records), "",
                f"![H100 throughput](results/{H100}_1.png)", ""]  # fmt: skip
    targets = cpu_target_files()
    if targets:
        out += ["## Targets on this CPU", ""]
        newest = json.loads(targets[0].read_text())["date"]
        for path in targets:
            report = json.loads(path.read_text())
            if report["date"] != newest:
                continue
            cores = report.get("cores_used", report["cores"])
            intro = (
                f"Issue 17: jmeta at least as fast as PyTorch on this CPU, measured side by side "
                f"in one run (`{path.stem}`: {report['cpu']}, {report['date']}, commit "
                f"{report['commit']}, float32, {cores} of {report['cores']} cores used, "
                f"1-minute load average {report['load_1min_start']:.1f} at the start). Speed is "
                f"the median over interleaved rounds of PyTorch's time over jmeta's."
            )
            out += [intro, ""] + ([NOTES[path.stem], ""] if path.stem in NOTES else [])
            out += [*cpu_targets_table(path), ""]
        for path in targets:
            body = path.with_suffix(".md").read_text().strip().splitlines()
            body = [("##" + line) if line.startswith("#") else line for line in body]
            out += [f"Command: `{json.loads(path.read_text())['command']}`", "", *body, ""]
    for title, stem, command in SECTIONS:
        md = RESULTS / f"{stem}.md"
        if stem == ACCURACY:
            body = accuracy.render(RESULTS / ACCURACY).strip().splitlines()
        elif md.exists():
            body = md.read_text().strip().splitlines()
        else:
            continue
        body = [("##" + line) if line.startswith("#") else line for line in body]  # demote headings
        out += [f"## {title}", "", f"Command: `{command}`", ""]
        out += [NOTES[stem], ""] if stem in NOTES else []
        out += [*body, ""]
        if stem == "memory" and (RESULTS / "memory_nvidia-h100-80gb-hbm3_2026-11-26.log").exists():
            log = (RESULTS / "memory_nvidia-h100-80gb-hbm3_2026-11-26.log").read_text().strip()
            out += ["On the H100 (2026-11-26, run 1; `benchmarks/memory.py --quick`, cut short "
                    "by the machine's time: conv_impl xla, float32; MiB; `peak` is the "
                    "allocator's peak after one step):", "", "```", log, "```", ""]  # fmt: skip
    (HERE / "RESULTS.md").write_text("\n".join(out))
    print(f"wrote {HERE / 'RESULTS.md'} ({len(out)} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
