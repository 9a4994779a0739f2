"""``jmeta train`` that pauses before a chosen compiled call, for tests that kill it there.

Run as ``python tests/pausing_train.py SIGNAL CALL jmeta-train-arguments...``:
before its ``CALL``-th compiled call of meta-steps (counting from 1) the run
creates the file ``SIGNAL`` and sleeps until it is killed. A test waits for
the file, so it kills the process at a known step, not wherever a race left it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jmeta.train.loop as loop
from jmeta.cli import main


def pause_before_call(signal: Path, call: int) -> None:
    compile_steps, calls = loop.compile_steps, [0]

    def compile_pausing(*args, **kwargs):
        compiled = compile_steps(*args, **kwargs)

        def run(*a):
            calls[0] += 1
            if calls[0] == call:
                signal.touch()
                while True:
                    time.sleep(1)
            return compiled(*a)

        return run

    loop.compile_steps = compile_pausing


if __name__ == "__main__":
    pause_before_call(Path(sys.argv[1]), int(sys.argv[2]))
    sys.exit(main(["train", *sys.argv[3:]]))
