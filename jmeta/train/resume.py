"""Resuming a run: what a checkpoint records, what may change, where the run continues.

The rules (also in docs/training.md):

* A resumed run may change ``num_steps`` (to any number not below the step it
  continues from; not with the cosine ``meta_lr_schedule``, which spans
  ``num_steps``), ``meta_lr`` (e.g. smaller, after a divergence), and where
  the data are (``data_dir``). Every other field must equal the saved
  ``config.json``, and the fields that define the parameters
  (:data:`~jmeta.train.config.PARAMETER_FIELDS`) must equal those recorded in
  the checkpoint it continues from. Each resume, and what it changed, is
  appended to the run record (``jmeta-run.json``); ``config.json`` always holds
  the configuration in force.
* It continues from the newest intact checkpoint. Damaged newer ones are
  reported, and deleted once the run continues (they would otherwise be
  mistaken for its progress).
* Without any intact checkpoint it starts again from step 0 only when the run
  never completed one, or diverged before its first good one; otherwise it is
  refused (starting again would silently drop the steps already logged).
* After a divergence, continuing with the same ``meta_lr`` is refused: the same
  steps would diverge at the same place.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jmeta.train.checkpoint import CheckpointDamaged, Checkpoints
from jmeta.train.config import PARAMETER_FIELDS, TrainConfig

#: Fields a resumed run may change: none alters the steps already taken.
RESUMABLE = (
    "num_steps", "meta_lr", "data_dir", "output_dir", "time_limit", "devices",
    "coordinator_address", "num_processes", "process_id", "coordinator_timeout",
)  # fmt: skip


def made_by(config: TrainConfig) -> dict[str, Any]:
    """What a checkpoint of ``config``'s run records about what made it."""
    from jmeta import __version__

    return {"jmeta": __version__, **expected(config), "meta_lr": config.meta_lr}


def expected(config: TrainConfig) -> dict[str, Any]:
    """The ``made_by`` entries a checkpoint must have to belong to ``config``'s run."""
    return {name: getattr(config, name) for name in PARAMETER_FIELDS}


def changes(saved: TrainConfig, config: TrainConfig, where: Path) -> dict[str, list[Any]]:
    """``{field: [saved, now]}`` of the allowed changes; refuses any other.

    Raises:
      ValueError: a field other than :data:`RESUMABLE` differs (each named).
    """
    differ = [
        f"{f.name}: saved {getattr(saved, f.name)!r}, now {getattr(config, f.name)!r}"
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RESUMABLE and getattr(saved, f.name) != getattr(config, f.name)
    ]
    if differ:
        raise ValueError(
            f"--resume: the configuration differs from the one saved in {where}: "
            + "; ".join(differ)
            + ". Only --num-steps and --meta-lr (and where the data are, the time limit and the "
            "devices that run it) may change on resume."
        )
    if config.meta_lr_schedule == "cosine" and saved.num_steps != config.num_steps:
        raise ValueError(
            f"--resume: --num-steps {config.num_steps} differs from the run's "
            f"{saved.num_steps}, and its cosine --meta-lr-schedule anneals over --num-steps: "
            f"the steps taken followed the schedule to step {saved.num_steps}, and a new "
            f"length would reshape the rest. Resume with --num-steps {saved.num_steps}, or "
            f"start again with --overwrite."
        )
    return {
        name: [getattr(saved, name), getattr(config, name)]
        for name in ("num_steps", "meta_lr", "data_dir")
        if getattr(saved, name) != getattr(config, name)
    }


class Resume(NamedTuple):
    """Where a resumed run continues.

    Attributes:
      state: the restored state, or ``None`` to start again from step 0.
      step: the step it continues from.
      stale: newer checkpoints (damaged) to delete once the run continues.
      entry: what the run record says about this resume.
    """

    state: Any
    step: int
    stale: list[int]
    entry: dict[str, Any]


def plan_resume(
    record: dict[str, Any], ckpts: Checkpoints, config: TrainConfig, saved: TrainConfig, like: Any
) -> Resume:
    """Check a resume of ``saved``'s run as ``config`` and restore where it continues.

    Args:
      record: the run record (``jmeta-run.json``).
      ckpts: the run's checkpoints.
      config: the configuration asked for.
      saved: the run's saved configuration.
      like: the state's structure (see :meth:`Checkpoints.restore`).

    Raises:
      ValueError: a change the rules refuse (the message says which and why).
      CheckpointMismatch: the checkpoint was made by another configuration.
    """
    assert config.output_dir is not None  # the trainer sets it before it opens the folder
    run_dir = Path(config.output_dir)
    changed = changes(saved, config, run_dir / "config.json")
    diverged = record.get("diverged")
    try:
        state = ckpts.restore(like=like, expect=expected(config))
        step = int(np.max(state.step))  # with seeds, one per seed: the run's is the largest
    except (FileNotFoundError, CheckpointDamaged) as err:
        never = not record.get("checkpointed") or (diverged and diverged["last_good"] is None)
        if ckpts.steps() or not never:
            lost = "" if ckpts.steps() else " although the run had written some"
            raise ValueError(
                f"--resume: {str(err).rstrip('.')}{lost}. Resuming would start again from step "
                "0 and drop what the run has logged: put the checkpoints back, or start again "
                "with --overwrite."
            ) from None
        state, step = None, 0  # killed before its first checkpoint, or diverged before it
    if config.num_steps < step:
        kept = ", ".join(map(str, ckpts.steps()))
        raise ValueError(
            f"--resume: --num-steps {config.num_steps} is below step {step}, where the run "
            f"continues (checkpoint {step} in {ckpts.directory}); a run cannot be shortened. "
            f"Score an earlier checkpoint (kept: {kept}) with `jmeta eval --checkpoint "
            f"{ckpts.directory}/<step>`, or start again with --overwrite."
        )
    if diverged and step < diverged["step"] and config.meta_lr == diverged["meta_lr"]:
        raise ValueError(
            f"--resume: the run diverged at meta-step {diverged['step']} with --meta-lr "
            f"{config.meta_lr}; continuing from step {step} with the same settings repeats the "
            f"same steps and diverges there again. Pass a smaller --meta-lr "
            f"(e.g. --meta-lr {config.meta_lr / 10:g})."
        )
    stale = [s for s in ckpts.steps() if s > step]
    entry = {"at": time.strftime("%Y-%m-%d %H:%M:%S %z"), "from_step": step, "changes": changed}
    if stale:
        entry["deleted_damaged_checkpoints"] = stale
    return Resume(state, step, stale, entry)
