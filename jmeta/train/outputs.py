"""The output folder of a run, and the rule that protects it.

``<output_dir>/`` holds ``config.json`` (the resolved configuration),
``metrics.jsonl``, ``checkpoints/<step>/``, ``results.json`` (the test scores),
``curves.png`` and, if ``tensorboardX`` is installed, ``tensorboard/``.

A folder that already holds any of these is never written into unless the
caller says how: ``resume`` (continue that run) or ``overwrite`` (delete those
files, and only those, first).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from jmeta.train.config import TrainConfig, config_from_dict, resolve_config
from jmeta.train.logs import write_json

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
RESULTS = "results.json"
CURVES = "curves.png"
TENSORBOARD = "tensorboard"
ARTEFACTS = (CONFIG, METRICS, CHECKPOINTS, RESULTS, CURVES, TENSORBOARD)

#: Fields a resumed run may change: they do not alter the steps already taken.
RESUMABLE_CHANGES = ("num_steps", "output_dir", "data_dir")


def default_output_dir(config: TrainConfig) -> Path:
    """``runs/<dataset>-<algorithm>-<YYYYmmdd-HHMMSS>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.dataset.replace(':', '-')}-{config.algorithm}-{stamp}"


def saved_config(output_dir: str | Path) -> TrainConfig:
    """The resolved configuration a run saved in ``output_dir``."""
    path = Path(output_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{output_dir} holds no run: {CONFIG} not found.")
    return resolve_config(config_from_dict(json.loads(path.read_text())))


def prepare(config: TrainConfig, *, resume: bool, overwrite: bool) -> Path:
    """Create or check the output folder of a resolved ``config``; returns its path.

    Raises:
      ValueError: ``resume`` and ``overwrite`` together, or a resumed run whose
        configuration differs from the saved one (beyond ``num_steps``).
      FileExistsError: the folder holds a run and neither flag is set.
      FileNotFoundError: ``resume`` without a run to resume.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other; pass one.")
    if resume and config.output_dir is None:
        raise ValueError("--resume needs --output-dir: the folder of the run to continue.")
    out = Path(config.output_dir) if config.output_dir else default_output_dir(config)
    found = [name for name in ARTEFACTS if (out / name).exists()]
    if resume:
        saved = saved_config(out)
        changed = [
            f"{f.name}: saved {getattr(saved, f.name)!r}, now {getattr(config, f.name)!r}"
            for f in dataclasses.fields(TrainConfig)
            if f.name not in RESUMABLE_CHANGES and getattr(saved, f.name) != getattr(config, f.name)
        ]
        if changed:
            raise ValueError(
                f"--resume: the configuration differs from the one saved in {out / CONFIG}: "
                + "; ".join(changed)
                + ". Only num_steps (and where the data are) may change on resume."
            )
    elif found:
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a run ({', '.join(found)}). Pass --resume to continue it, "
                "--overwrite to replace it, or choose another --output-dir."
            )
        for name in found:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG, config.replace(output_dir=str(out)).to_dict())
    return out
