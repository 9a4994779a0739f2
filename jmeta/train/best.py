"""The best checkpoint by validation score, and early stopping.

With ``keep_best``, each validation that beats every earlier one saves the
state, with jmeta's own :class:`~jmeta.train.checkpoint.Checkpoints` (atomic,
checksummed, ``made_by``), as the single checkpoint in ``best/<step>/`` of the
run folder. The score is the validation accuracy (higher is better), or the
validation loss (the MSE of regression; lower is better). A tie is no
improvement: the earlier step is kept.

With ``early_stop = N``, training stops after ``N`` validations in a row
without improvement. ``results.json`` says why and when the run stopped.

Nothing is kept in memory that a resume could not rebuild: the history of
validation scores is read back from ``metrics.jsonl`` (which a resume cuts at
the step it continues from), so a run killed at any moment and resumed makes
the same decisions as one never stopped. The best checkpoint is saved before
the regular checkpoint of the same step; a run killed between the two resumes
from an earlier step and validates (and saves) that step again, with the same
score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from jmeta.train.checkpoint import Checkpoints

#: The run folder's subfolder holding the best checkpoint.
BEST = "best"


class Best(NamedTuple):
    """Where a run stands on validation.

    Attributes:
      metric: the score compared (``"accuracy"`` or ``"loss"``).
      step: the step of the best validation so far (``None``: none yet).
      value: its score.
      since: validations since the best one (0 right after an improvement).
    """

    metric: str
    step: int | None = None
    value: float | None = None
    since: int = 0

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"

    def update(self, step: int, value: float) -> Best:
        """The standing after a validation at ``step`` scored ``value`` (NaN: no improvement)."""
        if not math.isfinite(value):
            return self._replace(since=self.since + 1)
        if self.value is None or (
            value > self.value if self.higher_is_better else value < self.value
        ):
            return self._replace(step=step, value=float(value), since=0)
        return self._replace(since=self.since + 1)

    @property
    def improved(self) -> bool:
        """Whether the last validation was the best so far."""
        return self.step is not None and self.since == 0

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "metric": self.metric, "value": self.value}


def metric_for(regression: bool) -> str:
    """The validation score compared: MSE (``"loss"``) for regression, else accuracy."""
    return "loss" if regression else "accuracy"


def replay(metric: str, records: Iterable[Mapping[str, Any]]) -> Best:
    """The standing after the validation records (``split == "val"``) in ``records``."""
    best = Best(metric)
    for record in records:
        if record.get("split") == "val" and isinstance(record.get(metric), int | float):
            best = best.update(int(record["step"]), float(record[metric]))
    return best


def best_checkpoints(run_dir: str | Path) -> Checkpoints:
    """The run's best-checkpoint folder (one checkpoint)."""
    return Checkpoints(Path(run_dir) / BEST, keep=1)


def stop_reason(best: Best, patience: int) -> str | None:
    """``"early_stop"`` when ``patience`` (> 0) validations in a row did not improve."""
    if patience and best.since >= patience:
        return "early_stop"
    return None
