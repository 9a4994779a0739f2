"""Markdown tables and charts from the benchmark scripts' JSON reports."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return (
                f"{n:.0f} {unit}"
                if unit == "B"
                else f"{n:.2f} {unit}"
                if n < 10
                else f"{n:.1f} {unit}"
            )
        n /= 1024
    return str(n)


def case_title(r: dict[str, Any]) -> str:
    order = "first order" if r["first_order"] else "second order"
    steps = f"{r['inner_steps']} inner step{'s' if r['inner_steps'] > 1 else ''}"
    return f"{r['workload']}, {r['batch']} tasks, {steps}, {order}"


def _peak(r: dict[str, Any]) -> str:
    if r.get("peak_bytes") is not None:
        return fmt_bytes(r["peak_bytes"])
    rss = r.get("process_peak_rss_bytes")
    return f"{fmt_bytes(rss)} (RSS)" if rss else "-"


def throughput_markdown(report: dict[str, Any]) -> str:
    """One table per workload; the jmeta row (default options) is the reference of the ratios."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in report["records"]:
        groups[(r["workload"], r["batch"], r["inner_steps"], r["first_order"])].append(r)
    lines = [
        f"### Throughput on {report['description']}",
        "",
        f"Suite `{report['suite']}`"
        + (f", {report['wall_s'] / 60:.1f} min" if report["wall_s"] == report["wall_s"] else "")
        + "; versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + ". Median over timed steps after warm-up (p10-p90 in brackets). Peak memory: XLA's "
        "compiled footprint for JAX (arguments + outputs + temporaries), the allocator peak for "
        "PyTorch on a GPU, the process's peak RSS on the CPU. `x jmeta` is jmeta's throughput "
        "divided by the row's. `first meta-loss`: the meta-loss of the first step, from the same "
        "initial parameters and tasks for every implementation (a check that they compute the "
        "same thing).",
        "",
    ]
    for rows in groups.values():
        ref = next(
            (r for r in rows if r["peer"] == "jmeta" and not r["options"] and r["status"] == "ok"),
            None,
        )
        lines += [f"**{case_title(rows[0])}**", ""]
        lines += ["| implementation | ms / step | tasks / s | compile s | peak memory | x jmeta "
                  "| first meta-loss |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in sorted(rows, key=lambda r: -(r.get("tasks_per_s") or 0)):
            if r["status"] != "ok":
                reason = r.get("reason") or r.get("error") or ""
                lines.append(f"| {r['label']} | {r['status']}: {_short(reason)} | | | | | |")
                continue
            ratio = f"{ref['tasks_per_s'] / r['tasks_per_s']:.1f}" if ref else "-"
            compile_s = r.get("build_and_compile_s", r.get("compile_or_first_call_s", 0))
            lines.append(
                f"| {r['label']} | {r['median_ms']:.2f} ({r['p10_ms']:.2f}-{r['p90_ms']:.2f}) "
                f"| {_rate(r['tasks_per_s'])} | {compile_s:.1f} "
                f"| {_peak(r)} | {ratio} | {_first_loss(r)} |"
            )
        lines.append("")
    return "\n".join(lines)


def _first_loss(r: dict[str, Any]) -> str:
    losses = r.get("first_losses") or []
    return f"{losses[0]:.5f}" if losses else "-"


def _short(text: str, n: int = 90) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= n else text[: n - 3] + "..."


def throughput_chart(report: dict[str, Any], path: Path) -> None:
    """Bar chart of tasks/s per implementation, one panel per workload (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in report["records"]:
        if r["status"] == "ok":
            groups[(r["workload"], r["batch"], r["inner_steps"], r["first_order"])].append(r)
    if not groups:
        return
    height = 1.2 + 0.45 * sum(map(len, groups.values())) + len(groups)
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, height), squeeze=False)
    for ax, rows in zip(axes[:, 0], groups.values(), strict=False):
        rows = sorted(rows, key=lambda r: r["tasks_per_s"])
        colors = [
            "tab:orange"
            if r["peer"] == "jmeta"
            else "tab:blue"
            if "jax" in r["peer"]
            else "tab:gray"
            for r in rows
        ]
        ax.barh([r["label"] for r in rows], [r["tasks_per_s"] for r in rows], color=colors)
        ax.set_xscale("log")
        ax.set_title(case_title(rows[0]), fontsize=9)
        for i, r in enumerate(rows):
            ax.text(r["tasks_per_s"], i, f" {_rate(r['tasks_per_s'])}", va="center", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[-1, 0].set_xlabel("tasks / s (log scale)")
    fig.suptitle(f"MAML meta-training throughput, {report['description']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rate(tasks_per_s: float) -> str:
    """Tasks per second: whole numbers, but two significant digits below 10 (CPU rates)."""
    return f"{tasks_per_s:,.0f}" if tasks_per_s >= 10 else f"{tasks_per_s:.2g}"
