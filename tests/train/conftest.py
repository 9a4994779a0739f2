"""Trainer tests never write to the user's cache or read Omniglot from the environment.

They also share a persistent compilation cache (one per test process): the many
tiny runs of these tests compile the same few programs, which XLA then compiles
once. Tracing and lowering still happen in every run, so what each test runs
is unchanged.
"""

import jax
import pytest
from tiny_runs import tiny_sinusoid


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JMETA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("JMETA_OMNIGLOT_DIR", raising=False)


@pytest.fixture(scope="package", autouse=True)
def _compilation_cache(tmp_path_factory):
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")  # fmt: skip
    before = {name: getattr(jax.config, name) for name in names}
    values = (str(tmp_path_factory.mktemp("xla-cache")), 0.0, 0)
    for name, value in zip(names, values, strict=True):
        jax.config.update(name, value)
    yield
    for name, value in before.items():
        jax.config.update(name, value)


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """A finished tiny run (20 steps, checkpoints 10 and 20, one test-time step count).

    Its folder also holds a user's notes, and a user's file in ``checkpoints/``. Copy it
    before changing anything.
    """
    from jmeta.train import train

    out = tmp_path_factory.mktemp("runs") / "finished"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with jax.numpy_dtype_promotion("standard"):  # optax.adam
        train(tiny_sinusoid(out, test_inner_steps=(1,)), progress=False)
    (out / "checkpoints" / "my_model.pt").write_bytes(b"someone's weights")
    return out
