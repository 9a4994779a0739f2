"""Test results: ``{inner steps: {metric: Estimate}}``, as JSON and as a table."""

from __future__ import annotations

from collections.abc import Mapping

from jmeta.evaluation import Estimate

#: ``{test-time inner steps: {metric name: Estimate}}``
Scores = Mapping[int, Mapping[str, Estimate]]


def scores_to_json(scores: Scores) -> dict[str, dict[str, dict[str, float]]]:
    """``{"3": {"accuracy": {"mean": ..., "ci95": ..., "num": ...}}}``."""
    return {
        str(steps): {name: est._asdict() for name, est in metrics.items()}
        for steps, metrics in scores.items()
    }


def scores_from_json(data: Mapping) -> dict[int, dict[str, Estimate]]:
    """The inverse of :func:`scores_to_json`."""
    return {
        int(steps): {name: Estimate(**est) for name, est in metrics.items()}
        for steps, metrics in data.items()
    }


def format_scores(scores: Scores, *, regression: bool, header: str = "") -> str:
    """A small table: one row per number of test-time inner steps.

    Classification shows accuracy (in %) before and after adaptation;
    regression shows the MSE.
    """
    name, label = ("loss", "MSE") if regression else ("accuracy", "accuracy")
    rows = [("inner steps", f"{label} before adaptation", f"{label} after adaptation")]
    for steps, metrics in sorted(scores.items()):
        rows.append(
            (
                str(steps) if f"{name}_before" in metrics else "- (no inner loop)",
                _fmt(metrics.get(f"{name}_before"), percent=not regression),
                _fmt(metrics.get(name), percent=not regression),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [header] if header else []
    lines += ["  " + "   ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _fmt(est: Estimate | None, *, percent: bool) -> str:
    if est is None:
        return "-"
    if percent:
        return f"{100 * est.mean:.2f}% ± {100 * est.ci95:.2f}%"
    return f"{est.mean:.4f} ± {est.ci95:.4f}"
