"""Disk faults end with one line naming the path and the problem, and lose no checkpoint.

Real faults where this process may make them: a read-only folder (permissions,
or a read-only bind mount where permissions do not stop this process, as for
root) and a full disk (a small tmpfs, filled up mid-run; skipped where this
process may not mount).
A full disk at the last write (``results.json``) is injected at ``os.replace``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from tiny_runs import TINY_SINUSOID, run_cli

import jmeta.train.logs as logs
from jmeta.train import Checkpoints

pytestmark = pytest.mark.standard_promotion  # the meta-optimizer is optax.adam


@functools.cache
def permissions_apply() -> bool:
    """Whether a folder without write permission stops this process (not so for root)."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        try:
            Path(folder, "probe").touch()
        except PermissionError:
            return True
        finally:
            os.chmod(folder, 0o755)
        return False


def jmeta(argv, capsys):
    """``(exit status, stdout, stderr)`` of ``jmeta argv``."""
    status, out, err = run_cli(argv, capsys)
    assert "Traceback" not in err, err
    return status, out, err


def train_argv(tmp_path: Path, out: Path, *flags: str) -> list:
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY_SINUSOID, "test_inner_steps": [1]}))
    return ["train", "--config", config, "--output-dir", out, "--no-progress", *flags]


def _mount(*args: str) -> None:
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount here ({done.stderr.strip()})")


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made read-only; yields the error it then gives (``strerror``)."""
    if permissions_apply():
        paths = [folder, *folder.rglob("*")]
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(modes[p] & ~0o222)
        try:
            yield "Permission denied"
        finally:
            for p in reversed(paths):
                p.chmod(modes[p])
        return
    _mount("--bind", str(folder), str(folder))
    try:
        _mount("-o", "remount,bind,ro", str(folder))
        yield "Read-only file system"
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, unmounted after the test (skipped where this process may not mount)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk))
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` until it is full; returns the filler file."""
    filler = disk / "filler"
    # Unbuffered: a buffered file would flush what the failing write left in its buffer on
    # close, outside the suppress, and raise ENOSPC into the run (a flaky failure in CI).
    with filler.open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
    return filler


def test_a_read_only_output_folder_gives_one_line_and_its_run_can_still_be_scored(
    finished, tmp_path, capsys
):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    empty = tmp_path / "empty"
    empty.mkdir()
    with read_only(out) as reason, read_only(empty):
        for folder, flags in ((out, ("--resume",)), (out, ("--overwrite",)), (empty, ())):
            status, _, err = jmeta(train_argv(tmp_path, folder, *flags), capsys)
            assert status == 2
            assert err.splitlines()[-1] == f"jmeta train: error: cannot write in {folder}: {reason}"
        status, stdout, _ = jmeta(["eval", "--checkpoint", out], capsys)  # reading needs no write
        assert status == 0 and "checkpoint at step 20" in stdout
    assert not list(empty.iterdir())


def stop_at_second_save(monkeypatch, fault):
    """Make ``fault()`` happen just before the run's second checkpoint save."""
    save = Checkpoints.save
    calls = []

    def faulty(self, step, *args, **kwargs):
        calls.append(step)
        if len(calls) == 2:
            fault(self.directory)
        return save(self, step, *args, **kwargs)

    monkeypatch.setattr(Checkpoints, "save", faulty)


def resume_and_compare(tmp_path, out, finished, capsys):
    status, _, err = jmeta(train_argv(tmp_path, out, "--resume"), capsys)
    assert status == 0, err
    assert (out / "results.json").read_bytes() == (finished / "results.json").read_bytes()


def test_checkpoints_made_read_only_mid_run_stop_it_with_one_line(
    finished, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    with contextlib.ExitStack() as stack:
        reasons = []
        stop_at_second_save(
            monkeypatch, lambda folder: reasons.append(stack.enter_context(read_only(folder)))
        )
        status, _, err = jmeta(train_argv(tmp_path, out), capsys)
    ckpts = out / "checkpoints"
    assert status == 1
    assert err.splitlines() == [
        f"jmeta train: stopped: cannot write checkpoint 20 in {ckpts}: {reasons[0]}; "
        f"checkpoints 10 in {ckpts} are as they were; --resume continues once this is fixed."
    ]
    status, stdout, _ = jmeta(["eval", "--checkpoint", out], capsys)
    assert status == 0 and "checkpoint at step 10" in stdout  # the earlier checkpoint is usable
    monkeypatch.undo()
    resume_and_compare(tmp_path, out, finished, capsys)


def test_a_full_disk_mid_run_stops_it_with_one_line(
    finished, small_disk, tmp_path, capsys, monkeypatch
):
    out = small_disk / "run"
    fillers = []
    stop_at_second_save(monkeypatch, lambda folder: fillers.append(fill(small_disk)))
    status, _, err = jmeta(train_argv(tmp_path, out), capsys)
    ckpts = out / "checkpoints"
    assert status == 1
    assert err.splitlines() == [
        f"jmeta train: stopped: cannot write checkpoint 20 in {ckpts}: No space left on device; "
        f"checkpoints 10 in {ckpts} are as they were; --resume continues once this is fixed."
    ]
    assert sorted(p.name for p in ckpts.iterdir()) == ["10"]  # no half-written checkpoint
    assert Checkpoints(ckpts).verify(10) is None
    fillers[0].unlink()
    monkeypatch.undo()
    resume_and_compare(tmp_path, out, finished, capsys)


def test_no_space_for_the_results_stops_with_one_line_and_resume_writes_them(
    finished, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    replace = os.replace

    def full(src, dst):
        if Path(dst).name == "results.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(src, dst)

    monkeypatch.setattr(logs.os, "replace", full)
    status, _, err = jmeta(train_argv(tmp_path, out), capsys)
    ckpts = out / "checkpoints"
    assert status == 1
    assert err.splitlines() == [
        f"jmeta train: stopped: cannot write {out / 'results.json'}: No space left on device; "
        f"checkpoints 10, 20 in {ckpts} are as they were; --resume continues once this is fixed."
    ]
    assert not (out / "results.json").exists() and not (out / "results.json.tmp").exists()
    monkeypatch.undo()
    resume_and_compare(tmp_path, out, finished, capsys)


def test_eval_json_into_a_missing_or_read_only_folder(finished, tmp_path, capsys):
    target = tmp_path / "missing" / "scores.json"
    status, _, err = jmeta(["eval", "--checkpoint", finished, "--json", target], capsys)
    assert status == 2
    assert err.splitlines()[-1] == (
        f"jmeta eval: error: --json {target}: no such folder {target.parent}"
    )
    folder = tmp_path / "locked"
    folder.mkdir()
    with read_only(folder) as reason:
        status, stdout, err = jmeta(
            ["eval", "--checkpoint", finished, "--json", folder / "scores.json"], capsys
        )
    assert status == 1 and "MSE after adaptation" in stdout  # the scores are not lost
    assert err.splitlines() == [
        f"jmeta eval: error: cannot write {folder / 'scores.json'}: {reason} "
        "(the scores are printed above)."
    ]
