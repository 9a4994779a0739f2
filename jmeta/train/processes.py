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

A process that dies (killed, out of memory) would leave the others blocked in
a collective until JAX's heartbeat timeout aborts them with a stack trace;
:func:`watch_peers` stops them instead, with one line, seconds after.
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import jax
import numpy as np

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


#: Seconds a process waits, after another one ended early, for its own run to end first.
GRACE_S = 5
#: Seconds the processes take to connect to process 0's watch; beyond, they run unwatched.
CONNECT_S = 30
EXIT_STOPPED = 1  # jmeta train's status for a run that stopped (jmeta.cli.EXIT_STOPPED)
_watching: list[Callable[[bool], None]] = []


def watch_peers(config: TrainConfig) -> None:
    """Stop this process, with one line, soon after another process of the run ends early.

    Each process other than 0 holds a TCP connection to process 0 (its
    address, on a port the system picks, is shared with a collective at
    start-up). The system closes a dead process's connections at once, so
    when a process other than 0 is killed, process 0 waits :data:`GRACE_S`
    seconds, in case its own run is ending too, then prints to stderr::

      jmeta train: stopped: process 1 of 2 ended before the run did (killed, or stopped by an
      error in its own output); this process (0) stops too. Checkpoints written so far are
      intact: start every process again with --resume to continue.

    and exits with status 1, wherever its main thread was: blocked in a
    collective, or writing a file (which the run folder survives as it
    survives a kill); the others then see process 0 go. When process 0 dies,
    JAX's runtime stops the others at once, with its own message and stack
    trace; a host that vanishes without closing its connections is caught by
    JAX's heartbeat (after 100 s, the same way). Call :func:`stop_watching`
    when the run ends. A no-op with one process.
    """
    count, me = jax.process_count(), jax.process_index()
    if count == 1 or _watching:
        return
    from jax.experimental import multihost_utils

    server, address = None, b""
    if me == 0:
        server = socket.create_server(("", 0), backlog=count)
        address = f"{_host(config)}:{server.getsockname()[1]}".encode()
    shared = np.zeros(256, np.uint8)
    shared[: len(address)] = np.frombuffer(address, np.uint8)
    shared = multihost_utils.broadcast_one_to_all(shared)
    host, port = bytes(np.asarray(shared)).rstrip(b"\0").decode().rsplit(":", 1)
    peers: dict[socket.socket, int] = {}
    try:
        if server is not None:
            server.settimeout(CONNECT_S)
            for _ in range(count - 1):
                conn, _ = server.accept()
                conn.settimeout(CONNECT_S)
                (index,) = struct.unpack("!i", conn.recv(4, socket.MSG_WAITALL))
                conn.settimeout(None)
                peers[conn] = index
        else:
            conn = socket.create_connection((host, int(port)), timeout=CONNECT_S)
            conn.sendall(struct.pack("!i", me))
            conn.settimeout(None)
            peers[conn] = 0
    except OSError as err:
        warnings.warn(
            f"process {me} could not connect to the other processes' watch at {host}:{port} "
            f"({err}); a process that dies stops the others only after JAX's heartbeat timeout.",
            RuntimeWarning, stacklevel=2,
        )  # fmt: skip
    finally:
        if server is not None:
            server.close()
    stopping = threading.Event()

    def stop(ok: bool) -> None:
        stopping.set()
        for conn in peers:
            try:
                conn.sendall(b"D" if ok else b"F")  # done, or failed
                conn.close()
            except OSError:
                pass

    def watch() -> None:
        selector = selectors.DefaultSelector()
        for conn in peers:
            selector.register(conn, selectors.EVENT_READ)
        try:
            while selector.get_map():
                for key, _ in selector.select():
                    conn = cast(socket.socket, key.fileobj)
                    try:
                        said = conn.recv(1)
                    except OSError:
                        said = b""
                    if said == b"D":  # it finished the run
                        selector.unregister(conn)
                        continue
                    if stopping.wait(GRACE_S):  # this run ends too: nothing to report
                        return
                    print(
                        f"jmeta train: stopped: process {peers[conn]} of {count} ended before the "
                        "run did (killed, or stopped by an error in its own output); this "
                        f"process ({me}) stops too. Checkpoints written so far are intact: start "
                        "every process again with --resume to continue.",
                        file=sys.stderr, flush=True,
                    )  # fmt: skip
                    os._exit(EXIT_STOPPED)  # the main thread may be blocked in JAX's runtime
        except (OSError, ValueError):
            if not stopping.is_set():
                raise

    if peers:
        threading.Thread(target=watch, name="jmeta-peers", daemon=True).start()
    _watching.append(stop)


def stop_watching(ok: bool = True) -> None:
    """This process's run ended (``ok``: as it should): tell the others, stop watching them."""
    while _watching:
        _watching.pop()(ok)


def _host(config: TrainConfig) -> str:
    """Process 0's host as the others reach it: the coordinator's, else this host's name."""
    address = config.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address:
        return address.rsplit(":", 1)[0]
    return socket.gethostname()


def sync(name: str) -> None:
    """Wait until every process gets here (e.g. past process 0's writes); a no-op with one."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


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
