"""Run outputs: metrics as JSON lines (and TensorBoard if available), curves as a PNG.

``metrics.jsonl`` holds one JSON object per line, each with ``"split"``
(``"train"``, ``"val"`` or ``"test"``) and ``"step"``; train lines average the
meta-steps of one compiled call and also carry ``"tasks_per_s"`` and
``"seconds"`` (wall time since the run, or its resumption, started).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from jmeta.train.lock import WriteError

#: Keys that measure the machine rather than the run (they differ between identical runs).
TIMING_KEYS = ("tasks_per_s", "seconds")


class MetricsLog:
    """Appends metric records to ``metrics.jsonl`` (and TensorBoard, if importable).

    Args:
      path: the JSON-lines file.
      resume_step: when resuming from a checkpoint at this step, records
        logged after it by the interrupted run, and test records (written
        again at the end), are dropped first (rewritten atomically), so the
        file reads as if the run had never stopped.
      tensorboard_dir: where to write TensorBoard events if ``tensorboardX``
        is importable (``None``: don't).
    """

    def __init__(self, path: str | Path, *, resume_step: int | None = None, tensorboard_dir=None):
        self.path = Path(path)
        try:
            if resume_step is not None and self.path.exists():
                kept = [
                    r
                    for r in read_metrics(self.path)
                    if r.get("step", 0) <= resume_step and r.get("split") != "test"
                ]
                tmp = self.path.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
                os.replace(tmp, self.path)
            self._file = self.path.open("a")
        except OSError as err:
            raise WriteError(self.path, err) from None
        self._tensorboard = _tensorboard_writer(tensorboard_dir)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line, flushed (a kill loses at most a torn last line).

        Raises:
          WriteError: the file cannot be written (full disk, read-only folder).
        """
        try:
            self._file.write(json.dumps(_plain(record)) + "\n")
            self._file.flush()
        except OSError as err:
            raise WriteError(self.path, err) from None
        if self._tensorboard is not None:
            run = f"seed{record['seed']}/" if "seed" in record else ""  # a run of several seeds
            for key, value in record.items():
                if key not in ("split", "step", "seed") and isinstance(value, (int, float)):
                    tag = f"{run}{record['split']}/{key}"
                    self._tensorboard.add_scalar(tag, value, record["step"])
            self._tensorboard.flush()

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass  # a failed flush was reported by write()
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; a torn last line (a killed write) is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_curves(records: list[dict[str, Any]], path: str | Path, *, title: str = "") -> None:
    """Training and validation curves against meta-steps, saved as a PNG.

    One panel for the loss (log scale) and, for classification, one for the
    accuracy; validation points carry their 95% confidence interval. A run of
    several seeds (records with ``"seed"``) has one line of each per seed.
    """
    # A Figure of its own, never pyplot's: matplotlib's backend (a notebook's inline plots) is
    # left as it is, and saving a PNG needs no display.
    from matplotlib.figure import Figure

    all_train = [r for r in records if r.get("split") == "train"]
    all_val = [r for r in records if r.get("split") == "val"]
    panels = ["loss"] + (["accuracy"] if any("accuracy" in r for r in all_train) else [])
    seeds = list(dict.fromkeys(r.get("seed") for r in all_train + all_val))
    fig = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    for i, name in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for seed in seeds:
            train = [r for r in all_train if r.get("seed") == seed]
            val = [r for r in all_val if r.get("seed") == seed]
            run = "" if seed is None else f"seed {seed}, "
            if train:
                ax.plot([r["step"] for r in train], [r[name] for r in train],
                        label=f"{run}train (query)")  # fmt: skip
            if val:
                ax.errorbar(
                    [r["step"] for r in val],
                    [r[name] for r in val],
                    yerr=[r.get(f"{name}_ci95", 0.0) for r in val],
                    marker="o",
                    capsize=3,
                    label=f"{run}validation (after adaptation)",
                )
        ax.set_xlabel("meta-step")
        classification = len(panels) > 1
        label = {"loss": "query cross-entropy" if classification else "query MSE"}
        ax.set_ylabel(label.get(name, f"query {name}"))
        if name == "loss" and all(r[name] > 0 for r in all_train + all_val):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    tmp = Path(path).with_suffix(".tmp.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(path, err) from None


def write_json(path: str | Path, value: Any) -> None:
    """Write JSON atomically (temporary file, then rename).

    Raises:
      WriteError: naming ``path``; no temporary file is left behind.
    """
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(_plain(value), indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise WriteError(path, err) from None


def _plain(value: Any) -> Any:
    """JSON-ready: NumPy scalars to Python numbers, non-finite floats to strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _tensorboard_writer(directory):
    if directory is None:
        return None
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(directory))
