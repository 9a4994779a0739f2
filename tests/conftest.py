"""Test configuration: 8 simulated CPU devices, strict dtype promotion.

The device count must be set before JAX initialises its backends, so it is set
here, at import time, before any test module imports JAX.
"""

import os

# Eight simulated CPU devices for the multi-device tests; LLVM optimisation off,
# which makes XLA:CPU compile the many small test programs 3-4x faster.
os.environ["XLA_FLAGS"] = " ".join(
    [
        os.environ.get("XLA_FLAGS", ""),
        "--xla_force_host_platform_device_count=8",
        "--xla_backend_optimization_level=0",
    ]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The trainer's persistent compilation cache (jmeta.train.compilation_cache) is off in tests, and
# so never the user's: tests/train/conftest.py gives its tests one per test process, and the tests
# of the cache itself (tests/train/test_compilation_cache.py, the real-Omniglot runs) their own.
os.environ.setdefault("JMETA_COMPILATION_CACHE", "off")

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "standard_promotion: run with JAX's standard dtype promotion (optax's adaptive "
        "optimizers mix Python floats with int32 step counts, which strict mode rejects)",
    )


@pytest.fixture(autouse=True)
def strict_dtype_promotion(request):
    """Every test runs with strict dtype promotion unless marked otherwise."""
    mode = "standard" if request.node.get_closest_marker("standard_promotion") else "strict"
    with jax.numpy_dtype_promotion(mode):
        yield


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield
