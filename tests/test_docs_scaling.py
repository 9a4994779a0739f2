"""The examples in docs/scaling.md run (on the 8 simulated CPU devices of tests/conftest.py)."""

import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "scaling.md"


@pytest.mark.standard_promotion  # user code as written in the docs, not under strict promotion
def test_scaling_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    # The device-count line must run before JAX starts (conftest has set 8 devices already);
    # the multi-host block needs several processes (tests/parallel/test_multihost.py runs it).
    runnable = [b for b in blocks if "jax_num_cpu_devices" not in b and "jax.distributed" not in b]
    assert len(runnable) == 6
    namespace = {}
    for i, block in enumerate(runnable):
        exec(compile(block, f"docs/scaling.md example {i}", "exec"), namespace)
    assert namespace["metrics"]["loss"].shape == ()
