"""A fork server for the fault-injection tests: imports jmeta once, forks one ``jmeta`` per run.

Importing JAX, orbax and jmeta takes seconds; a forked child starts with them
imported (the server never initialises a JAX backend, so forking is safe) and
reads the programs it compiles from JAX's persistent compilation cache
(``JAX_COMPILATION_CACHE_DIR``), so a run that is killed and resumed twenty
times costs little more than its own steps.

Run as ``python tests/fault_zygote.py``. One JSON request per line on stdin,
one JSON answer per line on stdout:

* ``{"op": "run", "argv": [...], "log": PREFIX, "plan": PLAN}`` forks a child
  running ``jmeta ARGV`` (stdout and stderr in ``PREFIX.out`` and
  ``PREFIX.err``); answers ``{"pid": ...}`` at once.
* ``{"op": "wait", "pid": N}`` answers ``{"status": S}``: the exit code, or
  ``-9`` for a child killed by ``SIGKILL``.

A plan makes the child act at its ``occurrence``-th entry into a ``phase``:
``"step"`` (a compiled call of meta-steps), ``"checkpoint"`` (a save),
``"validation"``, ``"test"`` (the final test), ``"log"`` (a metrics line) or
``"record"`` (a run-record update). ``"action"``:

* ``"kill"``: ``SIGKILL`` itself ``delay`` seconds after entering the phase
  (a timer thread, so the signal lands wherever the work has got to), or
  right after the phase returns if ``delay`` is ``null``;
* ``"pause"``: create the file ``signal`` and sleep until killed (a live run);
* ``"measure"``: no fault; write each phase's durations to ``signal`` (JSON).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback

import jax  # noqa: F401  (imported, not initialised: the children initialise their own)
import matplotlib
import matplotlib.figure  # noqa: F401
import orbax.checkpoint  # noqa: F401
import tqdm.auto  # noqa: F401

import jmeta.cli
import jmeta.train.loop as loop
from jmeta.train.checkpoint import Checkpoints
from jmeta.train.logs import MetricsLog
from jmeta.train.outputs import RunFolder

matplotlib.use("Agg")


def _instrument(plan: dict) -> dict[str, list[float]]:
    """Wrap each phase's function so the plan acts on it; returns the phase durations."""
    counts: dict[str, int] = {}
    durations: dict[str, list[float]] = {}

    def enter(phase: str) -> bool:
        counts[phase] = counts.get(phase, 0) + 1
        hit = phase == plan.get("phase") and counts[phase] == plan.get("occurrence")
        if hit and plan["action"] == "kill" and plan.get("delay") is not None:
            if plan["delay"] <= 0:
                os.kill(os.getpid(), signal.SIGKILL)
            timer = threading.Timer(plan["delay"], os.kill, (os.getpid(), signal.SIGKILL))
            timer.daemon = True
            timer.start()
        if hit and plan["action"] == "pause":
            open(plan["signal"], "w").close()
            while True:
                time.sleep(1)
        return hit

    def wrap(phase, fn, block=False):
        def wrapped(*args, **kwargs):
            hit = enter(phase)
            tick = time.perf_counter()
            out = fn(*args, **kwargs)
            if block:
                out = jax.block_until_ready(out)
            durations.setdefault(phase, []).append(time.perf_counter() - tick)
            if hit and plan["action"] == "kill" and plan.get("delay") is None:
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        return wrapped

    compile_steps = loop.compile_steps
    loop.compile_steps = lambda *a, **k: wrap("step", compile_steps(*a, **k), block=True)
    loop.validate = wrap("validation", loop.validate)
    loop.test_scores = wrap("test", loop.test_scores)
    Checkpoints.save = wrap("checkpoint", Checkpoints.save)
    MetricsLog.write = wrap("log", MetricsLog.write)
    RunFolder.update = wrap("record", RunFolder.update)
    return durations


def _child(request: dict) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(os.open(request["log"] + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
    os.dup2(os.open(request["log"] + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    plan = request.get("plan") or {}
    status = 0
    try:
        durations = _instrument(plan)
        status = jmeta.cli.main(request["argv"])
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
        status = 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if plan.get("action") == "measure":
            with open(plan["signal"], "w") as f:
                json.dump(durations, f)
        os._exit(status)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "run":
            pid = os.fork()
            if pid == 0:
                _child(request)
            answer = {"pid": pid}
        elif request["op"] == "wait":
            _, status = os.waitpid(request["pid"], 0)
            answer = {"status": os.waitstatus_to_exitcode(status)}
        else:
            break
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
