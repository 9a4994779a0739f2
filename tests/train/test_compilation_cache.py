"""jmeta.train.compilation_cache: the persistent compilation cache the trainer turns on."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from jmeta.train.compilation_cache import (
    CACHE_ENV,
    MAX_BYTES,
    CompilationCacheWarning,
    enable_compilation_cache,
)

REPO = Path(__file__).resolve().parents[2]
NAMES = ("jax_compilation_cache_dir", "jax_compilation_cache_max_size")


@pytest.fixture
def unconfigured():
    """No cache configured in JAX (this package's conftest sets one); restored afterwards."""
    before = {name: getattr(jax.config, name) for name in NAMES}
    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_compilation_cache_max_size", -1)
    yield
    for name, value in before.items():
        jax.config.update(name, value)


def test_the_default_folder_is_xla_in_jmetas_cache(unconfigured, monkeypatch, tmp_path):
    monkeypatch.setenv("JMETA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert enable_compilation_cache() == tmp_path / "cache" / "xla"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache" / "xla")
    assert jax.config.jax_compilation_cache_max_size == MAX_BYTES


def test_the_environment_names_the_folder_or_turns_it_off(unconfigured, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert enable_compilation_cache() == tmp_path / "mine"
    assert (tmp_path / "mine").is_dir()
    jax.config.update("jax_compilation_cache_dir", None)
    for off in ("off", "OFF", "0", "false", "none"):
        monkeypatch.setenv(CACHE_ENV, off)
        assert enable_compilation_cache() is None
        assert jax.config.jax_compilation_cache_dir is None


def test_a_cache_you_configured_is_left_alone(unconfigured, monkeypatch, tmp_path):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "yours"))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "ours"))
    assert enable_compilation_cache() == tmp_path / "yours"
    assert jax.config.jax_compilation_cache_max_size == -1
    assert not (tmp_path / "ours").exists()


def test_an_unwritable_folder_costs_only_the_caching(unconfigured, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "xla"))
    with pytest.warns(CompilationCacheWarning) as caught:
        assert enable_compilation_cache() is None
    (warning,) = caught
    assert str(warning.message).startswith(
        f"could not write to the compilation cache folder {blocker / 'xla'} ("
    )
    assert str(warning.message).endswith(
        "compiling without a persistent cache. Set $JMETA_COMPILATION_CACHE to a writable "
        "folder, or to off"
    )
    assert jax.config.jax_compilation_cache_dir is None


@pytest.mark.slow
def test_jmeta_eval_reuses_the_test_program_that_jmeta_train_compiled(tmp_path):
    """Two commands, two processes: eval's test program is a cache hit (same devices, same HLO)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=str(REPO), JMETA_CACHE=str(tmp_path / "cache"),
               JMETA_COMPILATION_CACHE=str(tmp_path / "xla"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_DEBUG_LOG_MODULES="jax._src.compiler")  # fmt: skip
    run = str(tmp_path / "run")
    cli = [sys.executable, "-m", "jmeta.cli"]
    train = [*cli, "train", "--num-steps", "4", "--steps-per-call", "2", "--eval-interval", "0",
             "--meta-batch-size", "4", "--eval-tasks", "8", "--test-inner-steps", "1",
             "--output-dir", run, "--no-progress"]  # fmt: skip
    done = subprocess.run(train, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "xla").glob("jit_run-*-cache"))
    scores = str(tmp_path / "eval.json")
    done = subprocess.run([*cli, "eval", "--checkpoint", run, "--json", scores], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Persistent compilation cache hit for 'jit_run'" in done.stderr
    # Same devices, same program: the run's own final test, bit for bit (docs/training.md).
    tested = json.loads((tmp_path / "run" / "results.json").read_text())["test"]
    assert json.loads(Path(scores).read_text())["scores"] == tested
