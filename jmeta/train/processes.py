"""Runs of several processes (hosts): joining them, and which process writes.

``jmeta train`` started once per host joins the others with
``jax.distributed.initialize`` when told how (``--coordinator-address``,
``--num-processes``, ``--process-id``), or when ``JAX_COORDINATOR_ADDRESS``
is set or an ``srun`` step has several tasks (JAX reads those variables);
JAX then lists every process's devices and the trainer's mesh spans them all
(:func:`jmeta.train.devices.train_mesh`). Every process computes the same
steps on its own devices; only process 0 writes the run folder (logs, plots,
``results.json``, checkpoints), which every process reads when it resumes, so
it must be on a file system they share.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from jmeta.train import outputs
from jmeta.train.config import ConfigValueError, TrainConfig


def wants_distributed(config: TrainConfig) -> bool:
    """Whether this run is one of several processes (flags, JAX's variables, or srun)."""
    given = (config.coordinator_address, config.num_processes, config.process_id)
    return (
        any(v is not None for v in given)
        or bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
        or int(os.environ.get("SLURM_STEP_NUM_TASKS", "1") or 1) > 1
    )


def initialize(config: TrainConfig, *, report: Callable[[ConfigValueError], str] = str) -> None:
    """``jax.distributed.initialize`` for a run of several processes; a no-op otherwise.

    Must run before anything else uses JAX's devices. A run whose processes
    have already been joined (by the caller) is left as it is.

    If the processes have not all joined after ``coordinator_timeout``
    seconds (an unreachable coordinator, or fewer processes started than
    ``num_processes``), JAX's runtime would abort the process with a stack
    trace a little later; instead this process prints ``report(error)`` (one
    line) to stderr and exits with status 2.

    Raises:
      ConfigValueError: ``process_id`` is not below ``num_processes``, or
        joining failed at once; the message names the fields.
    """
    if not wants_distributed(config):
        return
    pid, count = config.process_id, config.num_processes
    if pid is not None and count is not None and pid >= count:
        raise ConfigValueError(
            "{0} {pid} must be below {1} ({count}): processes are numbered from 0.",
            ["process_id", "num_processes"], pid=pid, count=count,
        )  # fmt: skip
    joined = threading.Event()

    def watch() -> None:
        if not joined.wait(config.coordinator_timeout):
            print(report(_not_joined(config, "timed out")), file=sys.stderr, flush=True)
            os._exit(2)  # the main thread is blocked in JAX's runtime: nothing to unwind

    threading.Thread(target=watch, name="jmeta-join-timeout", daemon=True).start()
    try:
        jax.distributed.initialize(
            coordinator_address=config.coordinator_address,
            num_processes=count,
            process_id=pid,
            initialization_timeout=config.coordinator_timeout + 30,  # the watchdog goes first
        )
    except RuntimeError as err:
        if "only be called once" in str(err):
            return  # joined already, by the code that called the trainer
        raise _not_joined(config, str(err)) from None
    except Exception as err:  # JAX's runtime errors: a refused connection, ...
        raise _not_joined(config, str(err) or type(err).__name__) from None
    finally:
        joined.set()


def _not_joined(config: TrainConfig, why: str) -> ConfigValueError:
    where = config.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "(from JAX)")
    first = why.strip().splitlines()[0] if why.strip() else "failed"
    return ConfigValueError(
        "could not join the run's processes at {0} {where} within {2} ({timeout} s), as "
        "process {pid} of {1} {count}: process 0 must be running there and reachable, and "
        "every process started with the same {1} ({why}).",
        ["coordinator_address", "num_processes", "coordinator_timeout"], where=where,
        timeout=config.coordinator_timeout, pid=config.process_id, count=config.num_processes,
        why=first[:200],
    )  # fmt: skip


def is_primary() -> bool:
    """Whether this process writes the run folder (process 0; the only one without several)."""
    return jax.process_index() == 0


class ReadOnlyFolder:
    """The run folder as a process other than 0 sees it: read, never written.

    The methods of :class:`~jmeta.train.outputs.RunFolder` that write do
    nothing here (process 0 does the writing).
    """

    def __init__(self, path: Path):
        self.path = path
        self.record: dict[str, Any] | None = outputs.read_record(path) if path.is_dir() else None

    def saved_config(self) -> TrainConfig:
        return outputs.saved_config(self.path)

    def start(self, config: TrainConfig, **record: Any) -> None:
        del config, record

    def update(self, **fields: Any) -> None:
        del fields

    def started(self) -> None:
        pass

    def abandon(self) -> None:
        pass

    def close(self) -> None:
        pass


class NoLog:
    """A metrics log that writes nothing (processes other than 0); ``path`` is process 0's."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        del record

    def close(self) -> None:
        pass
