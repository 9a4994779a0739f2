"""A run folder never loses data and never lies: ownership, replacement, the lock, resume rules.

Most tests act on a copy of one finished tiny run (the ``finished`` fixture).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket

import jax
import numpy as np
import pytest
from tiny_runs import tiny_sinusoid

import jmeta.train.loop as loop
from jmeta.cli import main
from jmeta.train import Checkpoints, TrainingDiverged, evaluate_checkpoint, train
from jmeta.train.checkpoint import CheckpointMismatch, CheckpointWarning
from jmeta.train.lock import RunFolderBusy, RunLock
from jmeta.train.logs import write_json
from jmeta.train.outputs import RunFolder

pytestmark = pytest.mark.standard_promotion  # the meta-optimizer is optax.adam


def snapshot(folder):
    """``{path: bytes}`` of every file under ``folder`` but the lock (its holder changes)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".jmeta-lock"
    }


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run to act on, and its config."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out, tiny_sinusoid(out, test_inner_steps=(1,))


def test_overwrite_checks_everything_before_it_deletes_anything(run):
    out, config = run
    before = snapshot(out)
    # A meta-batch that cannot fit in memory is refused while setting up: nothing is touched.
    with pytest.raises(ValueError, match="meta_batch_size 100000000 needs at least an estimated"):
        train(config.replace(meta_batch_size=100_000_000), overwrite=True, progress=False)
    assert snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".jmeta-lock", "jmeta-run.json", "config.json", "metrics.jsonl", "checkpoints",
         "results.json", "timings.json", "curves.png", "notes.txt"]
    )  # fmt: skip


def test_a_replaced_run_comes_back_if_the_new_one_fails_before_it_starts(run, monkeypatch):
    out, config = run
    before = snapshot(out)

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8 GiB.")

    monkeypatch.setattr(loop, "compile_steps", out_of_memory)
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
        train(config.replace(seed=7), overwrite=True, progress=False)
    assert snapshot(out) == before
    assert not (out / ".jmeta-replaced").exists()


def test_overwrite_replaces_only_what_jmeta_wrote(run):
    out, config = run
    result = train(config.replace(seed=7, num_steps=10), overwrite=True, progress=False)
    assert int(result.state.step) == 10
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "checkpoints" / "my_model.pt").read_bytes() == b"someone's weights"
    assert Checkpoints(out / "checkpoints").steps() == [10]
    assert json.loads((out / "config.json").read_text())["seed"] == 7
    assert not (out / ".jmeta-replaced").exists()
    record = json.loads((out / "jmeta-run.json").read_text())
    assert record["format"] == 1 and record["resumes"] == []


@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}])
def test_a_folder_of_files_jmeta_did_not_write_is_never_touched(tmp_path, flags):
    out = tmp_path / "theirs"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "my_model.pt").write_bytes(b"someone's weights")
    (out / "config.json").write_text('{"lr": 0.1}')
    before = snapshot(out)
    with pytest.raises(
        (FileExistsError, FileNotFoundError),
        match=rf"{out} holds config.json, checkpoints/ but no jmeta-run.json: these were not "
        r"written by this jmeta .* never deletes or continues what it did not write",
    ):
        train(tiny_sinusoid(out), progress=False, **flags)
    assert snapshot(out) == before


def test_a_second_writer_is_refused_with_who_holds_the_folder(run):
    out, config = run
    before = snapshot(out)
    lock = RunLock.acquire(out)  # as a live `jmeta train` in this process would hold it
    try:
        holder = f"PID {os.getpid()} on host {socket.gethostname()}, since "
        for flags in ({"resume": True}, {"overwrite": True}):
            with pytest.raises(
                RunFolderBusy, match=rf"{out} is being written by another jmeta process \({holder}"
            ):
                train(config, progress=False, **flags)
    finally:
        lock.release()
    assert snapshot(out) == before


def test_a_resume_cannot_shorten_a_run_or_rewrite_its_config(run):
    out, config = run
    before = snapshot(out)
    with pytest.raises(
        ValueError,
        match=r"--resume: --num-steps 10 is below step 20, where the run continues \(checkpoint "
        rf"20 in {out / 'checkpoints'}\); a run cannot be shortened\. Score an earlier checkpoint "
        r"\(kept: 10, 20\) with `jmeta eval --checkpoint .*/<step>`, or start again with "
        r"--overwrite\.",
    ):
        train(config.replace(num_steps=10), resume=True, progress=False)
    with pytest.raises(ValueError, match=r"configuration differs .* seed: saved 0, now 4"):
        train(config.replace(seed=4), resume=True, progress=False)
    assert snapshot(out) == before


def test_a_resume_without_its_checkpoints_is_refused_not_restarted(run):
    out, config = run
    shutil.rmtree(out / "checkpoints")
    before = snapshot(out)
    with pytest.raises(
        ValueError,
        match=rf"--resume: no checkpoint in {out / 'checkpoints'} although the run had written "
        r"some\. Resuming would start again from step 0 and drop what the run has logged",
    ):
        train(config, resume=True, progress=False)
    assert snapshot(out) == before  # metrics.jsonl is not truncated


def test_a_resume_may_add_steps_and_lower_the_step_size_and_says_so(run, finished):
    out, config = run
    result = train(config.replace(num_steps=30, meta_lr=5e-4), resume=True, progress=False)
    assert int(result.state.step) == 30
    saved = json.loads((out / "config.json").read_text())
    assert (saved["num_steps"], saved["meta_lr"]) == (30, 5e-4)  # as the parameters were made
    resumed = json.loads((out / "jmeta-run.json").read_text())["resumes"]
    assert [(r["from_step"], r["changes"]) for r in resumed] == [
        (20, {"num_steps": [20, 30], "meta_lr": [1e-3, 5e-4]})
    ]
    assert json.loads((out / "results.json").read_text())["step"] == 30
    sessions = json.loads((out / "timings.json").read_text())["sessions"]
    assert [(s["from_step"], s["to_step"]) for s in sessions] == [(0, 20), (20, 30)]
    assert Checkpoints(out / "checkpoints").made_by(30)["meta_lr"] == 5e-4


def test_a_checkpoint_of_another_algorithm_is_refused_by_name(run):
    out, config = run
    saved = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**saved, "algorithm": "fomaml"}))
    mismatch = (
        rf"checkpoint 20 in {out / 'checkpoints'} was made by another configuration: "
        r"algorithm='maml' there, 'fomaml' here\. It was copied from another run, or the run's "
        r"config.json was edited\."
    )
    with pytest.raises(CheckpointMismatch, match=mismatch):
        evaluate_checkpoint(out)
    with pytest.raises(CheckpointMismatch, match=mismatch):
        train(config.replace(algorithm="fomaml"), resume=True, progress=False)


def test_after_divergence_only_states_training_can_continue_from_are_kept(tmp_path):
    out = tmp_path / "run"
    # Plain SGD with a large meta step size: meta-step 15 goes non-finite.
    config = tiny_sinusoid(
        out, meta_optimizer="sgd", meta_lr=5.0, num_steps=20, steps_per_call=2,
        eval_interval=0, checkpoint_interval=2, test_inner_steps=(1,),
    )  # fmt: skip
    with pytest.raises(
        TrainingDiverged,
        match=r"meta-step 15 gave a non-finite meta-loss or meta-gradient \(loss = inf\); training "
        r"stopped with the parameters after step 14\. Checkpoint 14 was deleted: its next step "
        r"is the one that failed\. Try a smaller --meta-lr \(5\.0\): `--resume --meta-lr 0\.5` "
        rf"continues from checkpoint 12 in {out / 'checkpoints'}, the last state",
    ) as info:
        train(config, progress=False)
    assert (info.value.step, info.value.last_checkpoint) == (14, 12)
    assert Checkpoints(out / "checkpoints").steps() == [10, 12]
    with pytest.raises(
        ValueError,
        match=r"--resume: the run diverged at meta-step 15 with --meta-lr 5\.0; continuing from "
        r"step 12 with the same settings .* diverges there again\. Pass a smaller --meta-lr "
        r"\(e\.g\. --meta-lr 0\.5\)\.",
    ):
        train(config, resume=True, progress=False)
    result = train(config.replace(meta_lr=0.5), resume=True, progress=False)  # the advice works
    assert int(result.state.step) == 20
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(result.state))
    resumed = json.loads((out / "jmeta-run.json").read_text())["resumes"][-1]
    assert (resumed["from_step"], resumed["changes"]) == (12, {"meta_lr": [5.0, 0.5]})


def test_jmeta_eval_skips_a_damaged_checkpoint_and_says_so_in_one_line(run, capsys):
    out, _ = run
    data = sorted((out / "checkpoints/20/state/ocdbt.process_0/d").iterdir())[0]
    flipped = bytearray(data.read_bytes())
    flipped[len(flipped) // 2] ^= 0x10
    data.write_bytes(bytes(flipped))
    assert main(["eval", "--checkpoint", str(out)]) == 0
    stdout, err = capsys.readouterr()
    assert "maml checkpoint at step 10, test split" in stdout
    name = data.relative_to(out / "checkpoints/20").as_posix()
    assert err.splitlines() == [
        f"jmeta eval: warning: checkpoint 20 in {out / 'checkpoints'} is damaged (1 file(s) "
        f"differ from their checksums: {name}); using checkpoint 10, the newest intact one."
    ]
    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", str(out / "checkpoints/20")])
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"jmeta eval: error: checkpoint 20 in {out / 'checkpoints'} is damaged: 1 file(s) differ "
        f"from their checksums: {name}. Intact checkpoints: [10]."
    )


def test_a_resume_from_a_damaged_checkpoint_falls_back_and_ends_the_same(run, finished):
    out, config = run
    manifest = out / "checkpoints/20/checkpoint.json"
    (out / "checkpoints/20" / next(iter(json.loads(manifest.read_text())["files"]))).unlink()
    damaged = (
        r"checkpoint 20 in .* is damaged \(1 file\(s\) missing: state/.*\); using checkpoint 10"
    )
    with pytest.warns(CheckpointWarning, match=damaged):
        result = train(config, resume=True, progress=False)
    assert int(result.state.step) == 20
    resumed = json.loads((out / "jmeta-run.json").read_text())["resumes"][-1]
    assert (resumed["from_step"], resumed["deleted_damaged_checkpoints"]) == (10, [20])
    assert Checkpoints(out / "checkpoints").verify(20) is None  # written again, intact
    assert (out / "results.json").read_bytes() == (finished / "results.json").read_bytes()


def test_a_run_killed_before_its_config_was_written_is_started_again_with_overwrite(
    tmp_path, capsys
):
    out = tmp_path / "run"
    out.mkdir()
    write_json(out / "jmeta-run.json", {"format": 1, "checkpointed": False, "resumes": []})
    advice = (
        rf"{out} holds no run: config.json not found \(the run was stopped before it had "
        r"started; start it again with --overwrite\)\."
    )
    with pytest.raises(FileNotFoundError, match=advice):
        train(tiny_sinusoid(out), resume=True, progress=False)
    with pytest.raises(SystemExit):
        main(["train", "--output-dir", str(out), "--resume"])
    assert re.fullmatch(f"jmeta train: error: {advice}", capsys.readouterr().err.splitlines()[-1])
    folder = RunFolder.open(out, overwrite=True)  # what --overwrite does first
    assert folder.mode == "overwrite"
    folder.close()
