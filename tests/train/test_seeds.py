"""``--seeds``: several seeds trained by one compiled program (vmap over a seed axis).

Each seed of a run of several must equal a run of that seed alone. The tolerance is
``rtol=1e-5, atol=1e-6`` on parameters and scores (docs/training.md): ``vmap`` turns the
model's matrix products into batched ones, which XLA may sum in another order on other
hardware. On this CPU the tiny runs below agree bit for bit.
"""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
from PIL import Image
from tiny_runs import fake_omniglot, run_cli, tiny_omniglot, tiny_sinusoid

from jmeta.train import (
    ConfigValueError,
    SeedDiverged,
    TrainConfig,
    TrainingDiverged,
    evaluate_checkpoint,
    predict,
    read_metrics,
    train,
)
from jmeta.train.loop import setup
from jmeta.train.resume import made_by

pytestmark = pytest.mark.standard_promotion  # the meta-optimizer is optax.adam

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
ONE_STEP_COUNT = {"test_inner_steps": (1,)}
#: Seeds 2 and 0 together, each meta-batch split over 2 devices (the seed axis with the task mesh).
MULTI = {"seeds": (2, 0), "devices": 2, **ONE_STEP_COUNT}


def assert_close_trees(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOLERANCE)


def assert_close_scores(a, b):
    assert set(a) == set(b)
    for steps in a:
        for name, est in a[steps].items():
            np.testing.assert_allclose(est.mean, b[steps][name].mean, **TOLERANCE)
            np.testing.assert_allclose(est.ci95, b[steps][name].ci95, **TOLERANCE)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Seeds 2 and 0 together on 2 devices, and each alone on one (the tiny sinusoid run)."""
    root = tmp_path_factory.mktemp("seeds")
    with jax.numpy_dtype_promotion("standard"):
        multi = train(tiny_sinusoid(root / "multi", **MULTI), progress=False)
        alone = {
            seed: train(
                tiny_sinusoid(root / f"seed{seed}", seed=seed, **ONE_STEP_COUNT), progress=False
            )  # fmt: skip
            for seed in (2, 0)
        }
    return multi, alone


def test_each_seed_equals_its_run_alone(runs):
    multi, alone = runs
    assert multi.seeds is not None and list(multi.seeds.test) == [2, 0]
    for index, seed in enumerate((2, 0)):
        assert_close_trees(jax.tree.map(lambda x, i=index: x[i], multi.state), alone[seed].state)
        assert_close_scores(multi.seeds.test[seed], alone[seed].test)
    assert multi.seeds.steps == {2: 20, 0: 20} and multi.seeds.diverged == {}


def test_results_json_has_each_seed_and_the_spread_across_seeds(runs):
    multi, alone = runs
    saved = json.loads((multi.output_dir / "results.json").read_text())
    assert list(saved["seeds"]) == ["2", "0"]
    for seed in (2, 0):
        loss = saved["seeds"][str(seed)]["test"]["1"]["loss"]
        assert loss == multi.seeds.test[seed][1]["loss"]._asdict() and loss["num"] == 16
    means = [multi.seeds.test[seed][1]["loss"].mean for seed in (2, 0)]
    across = saved["across_seeds"]
    assert across["seeds"] == [2, 0]
    assert across["test"]["1"]["loss"] == {
        "mean": pytest.approx(np.mean(means)),
        "std": pytest.approx(np.std(means, ddof=1)),  # sample standard deviation
        "num": 2,
    }
    summary = multi.summary()
    assert "2 seeds (2 0), 20 meta-steps" in summary
    assert "across seeds: mean ± sample standard deviation (n - 1)" in summary
    assert f"{np.mean(means):.4f} ± {np.std(means, ddof=1):.4f}" in summary
    records = read_metrics(multi.output_dir / "metrics.jsonl")
    assert [(r["split"], r["step"], r.get("seed")) for r in records][:5] == [
        ("train", 5, 2), ("train", 5, 0), ("train", 10, 2), ("train", 10, 0), ("val", 10, 2),
    ]  # fmt: skip


def test_a_resumed_run_of_several_seeds_continues_bit_for_bit(runs, tmp_path, capsys):
    multi, _ = runs
    part = tmp_path / "part"
    config = tiny_sinusoid(part, **MULTI)
    train(config.replace(num_steps=10), progress=False)
    resumed = train(config, resume=True, progress=False)
    same = jax.tree.map(np.array_equal, resumed.state, multi.state)
    assert all(jax.tree.leaves(same))
    assert (part / "results.json").read_bytes() == (multi.output_dir / "results.json").read_bytes()
    status, _, err = run_cli(["train", "--resume", "--output-dir", part, "--seeds", 0, 1], capsys)
    assert status == 2
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            f"--resume: --seeds 0 1 differs from the run's --seeds 2 0 (saved in "
            f"{part / 'config.json'}); the seeds of a run cannot change: resume with --seeds 2 0, "
            "or start a new run."
        )
    )


def test_eval_scores_every_seed_or_the_one_asked_for(runs, capsys, tmp_path):
    multi, alone = runs
    run = multi.output_dir
    scores, step = evaluate_checkpoint(run, run_seed=0)
    assert step == 20 and scores == multi.seeds.test[0]
    with pytest.raises(ConfigValueError, match=r"^run_seed is missing: the run in .* trained "
                       r"seeds 2 0 together; pass run_seed with one of them\.$"):  # fmt: skip
        evaluate_checkpoint(run)
    status, out, err = run_cli(["eval", "--checkpoint", run, "--json", tmp_path / "e.json"],
                               capsys)  # fmt: skip
    assert status == 0, err
    assert "per seed mean ± 95%" in out and "mean ± std (2)" in out
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["seeds"]["0"]["scores"]["1"]["loss"] == scores[1]["loss"]._asdict()
    status, _, err = run_cli(["eval", "--checkpoint", run, "--run-seed", 5], capsys)
    assert status == 2
    assert err.strip().splitlines()[-1].endswith(
        "--run-seed 5 is not one of them: the run in " f"{run} trained seeds 2 0 together; "
        "pass --run-seed with one of them."
    )  # fmt: skip
    single = alone[0].output_dir
    with pytest.raises(ConfigValueError, match=r"run_seed 3: the run in .* trained seed 0 alone"):
        evaluate_checkpoint(single, run_seed=3)


def test_a_diverged_seed_is_reported_and_frozen_while_the_others_go_on(tmp_path):
    # Plain SGD with a large meta step size: seed 0 goes non-finite at meta-step 7 (as it does
    # alone), seed 2 does not.
    hostile = {"meta_optimizer": "sgd", "meta_lr": 1.0, "eval_interval": 0,
               "checkpoint_interval": 10, **ONE_STEP_COUNT}  # fmt: skip
    with pytest.raises(TrainingDiverged, match="meta-step 7 gave a non-finite") as info:
        train(tiny_sinusoid(tmp_path / "alone0", seed=0, **hostile), progress=False)
    assert info.value.step == 6
    alone = train(tiny_sinusoid(tmp_path / "alone2", seed=2, **hostile), progress=False)
    with pytest.warns(SeedDiverged) as caught:
        multi = train(tiny_sinusoid(tmp_path / "multi", seeds=(0, 2), **hostile), progress=False)
    (warning,) = caught
    assert str(warning.message) == (
        "seed 0: meta-step 7 was not applied: the meta-loss is not finite (inf); seed 0 is "
        "frozen with its parameters after step 6, the other seeds continue."
    )
    assert multi.seeds.steps == {0: 6, 2: 20} and list(multi.seeds.test) == [2]
    frozen = jax.tree.map(lambda x: np.asarray(x[0]), multi.state)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(frozen))
    assert_close_trees(jax.tree.map(lambda x: x[1], multi.state), alone.state)
    assert_close_scores(multi.seeds.test[2], alone.test)
    saved = json.loads((tmp_path / "multi/results.json").read_text())
    assert saved["seeds"]["0"] == {
        "step": 6,
        "diverged": {"step": 7, "cause": "the meta-loss is not finite (inf)", "meta_lr": 1.0},
    }
    assert saved["across_seeds"]["seeds"] == [2]
    assert saved["across_seeds"]["test"]["1"]["loss"]["std"] is None  # one seed: no spread
    assert "diverged at meta-step 7" in multi.summary()
    record = json.loads((tmp_path / "multi/jmeta-run.json").read_text())
    assert record["diverged_seeds"]["0"]["step"] == 7
    # Resumed from checkpoint 10, seed 0 stays frozen (it is behind) and is still marked.
    shutil.rmtree(tmp_path / "multi/checkpoints/20")
    again = train(tiny_sinusoid(tmp_path / "multi", seeds=(0, 2), **hostile), resume=True,
                  progress=False)  # fmt: skip
    assert again.seeds.steps == {0: 6, 2: 20} and set(again.seeds.diverged) == {0}
    assert json.loads((tmp_path / "multi/results.json").read_text()) == saved


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seeds": (1, 2, 1)}, r"^seeds lists seed 1 more than once; each seed is one run\.$"),
        ({"seeds": ()}, r"^seeds must be one or more integers; got \(\)\.$"),
        ({"seeds": (0, -1)}, r"^seeds must be >= 0; got -1\.$"),
        ({"seeds": (0, 1), "seed": 3}, r"^seed and seeds contradict each other: seeds trains "
         r"each seed it lists; drop seed \(3\) or put it in seeds\.$"),
        ({"seeds": (0, 1), "keep_best": True}, r"^keep_best is not supported with seeds: the "
         r"seeds would keep or stop at different steps; drop one of them\.$"),
        ({"seeds": (0, 1), "early_stop": 2}, r"^early_stop is not supported with seeds"),
    ],
)  # fmt: skip
def test_bad_seeds_are_refused_by_name(changes, message):
    with pytest.raises(ConfigValueError, match=message):
        TrainConfig(**changes)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds"], "argument --seeds: expected at least one argument"),
        (["--seeds", "1", "1"], "--seeds lists seed 1 more than once; each seed is one run."),
        (["--seeds", "-2"], "--seeds must be >= 0; got -2."),
        (["--seed", "0", "--seeds", "1", "2"], "--seed and --seeds contradict each other"),
        (["--seeds", "1", "2", "--early-stop", "3", "--eval-interval", "1000"],
         "--early-stop is not supported with --seeds"),
    ],
)  # fmt: skip
def test_bad_seeds_flags_are_one_line_naming_the_flag(argv, message, tmp_path, capsys):
    status, _, err = run_cli(["train", "--output-dir", tmp_path / "run", *argv], capsys)
    assert status == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def _initial_run(config) -> None:
    """A run folder whose one checkpoint (step 0) is the initial state: no training to compile."""
    prepared = setup(config)
    try:
        prepared.checkpoints.save(0, prepared.state, made_by=made_by(config))
    finally:
        prepared.folder.close()


def test_predict_uses_the_seed_asked_for(tmp_path):
    data = fake_omniglot(tmp_path / "data")
    _initial_run(tiny_omniglot(tmp_path / "multi", data, seeds=(0, 1)))
    _initial_run(tiny_omniglot(tmp_path / "one", data, seed=1))
    support, query = tmp_path / "support", tmp_path / "query"
    for i, name in enumerate(("a", "b", "c")):
        (support / name).mkdir(parents=True)
        Image.fromarray(np.full((16, 16), 60 * i, np.uint8)).save(support / name / "0.png")
    query.mkdir()
    Image.fromarray(np.full((16, 16), 70, np.uint8)).save(query / "q.png")
    picked = predict(tmp_path / "multi", support, query, run_seed=1)
    alone = predict(tmp_path / "one", support, query)
    np.testing.assert_allclose(picked.probabilities, alone.probabilities, **TOLERANCE)
    other = predict(tmp_path / "multi", support, query, run_seed=0)
    assert not np.allclose(other.probabilities, alone.probabilities)
    with pytest.raises(ConfigValueError, match=r"^run_seed is missing: the run in .* trained "
                       r"seeds 0 1 together"):  # fmt: skip
        predict(tmp_path / "multi", support, query)


def test_jmeta_train_shows_a_diverged_seed_as_one_line(capsys):
    import warnings

    from jmeta.cli import _one_line_warnings

    with _one_line_warnings("train"):
        warnings.warn("seed 0: meta-step 7 was not applied", SeedDiverged, stacklevel=1)
    assert capsys.readouterr().err == "jmeta train: warning: seed 0: meta-step 7 was not applied\n"
