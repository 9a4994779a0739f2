"""--algo mamlpp in the trainer: the paper's presets, the cosine meta-learning rate, a run."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_runs import tiny_sinusoid

from jmeta.train import TrainConfig, train
from jmeta.train.build import COSINE_FLOOR, meta_optimizer

pytestmark = pytest.mark.standard_promotion  # the meta-optimizer is optax.adam


def test_mamlpp_takes_the_papers_settings_unless_given():
    c = TrainConfig(algorithm="mamlpp", dataset="omniglot")
    assert (c.inner_steps, c.inner_lr, c.meta_batch_size, c.test_inner_steps) == (5, 0.1, 8, (5,))
    assert c.meta_lr_schedule == "cosine" and c.test_inner_lr == 0.1
    assert TrainConfig(algorithm="mamlpp", dataset="omniglot", inner_steps=3).inner_steps == 3
    maml = c.replace(algorithm="maml")
    assert (maml.inner_steps, maml.inner_lr, maml.meta_lr_schedule) == (1, 0.4, "constant")
    assert TrainConfig(algorithm="mamlpp", dataset="mini_imagenet").meta_batch_size == 2
    assert TrainConfig(meta_lr_schedule="cosine").meta_lr_schedule == "cosine"
    with pytest.raises(ValueError, match="meta_lr_schedule must be one of"):
        TrainConfig(meta_lr_schedule="linear")


def test_cosine_meta_learning_rate_follows_the_formula():
    n, lr = 10, 0.5
    config = TrainConfig(meta_optimizer="sgd", meta_lr=lr, meta_lr_schedule="cosine",
                         num_steps=n, steps_per_call=1, eval_interval=1,
                         checkpoint_interval=1)  # fmt: skip
    opt = meta_optimizer(config)
    params = {"w": jnp.zeros(())}
    state = opt.init(params)
    for s in range(n + 2):
        updates, state = opt.update({"w": jnp.ones(())}, state, params)
        t = min(s, n) / n
        want = lr * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * t)))
        np.testing.assert_allclose(-float(updates["w"]), want, rtol=1e-5)
    assert isinstance(opt, optax.GradientTransformation)


def test_a_tiny_mamlpp_run_counts_its_steps_and_learns(tmp_path):
    config = tiny_sinusoid(tmp_path / "run", algorithm="mamlpp", inner_steps=2)
    with jax.numpy_dtype_promotion("standard"):
        result = train(config, progress=False)
    assert float(result.state.meta_params.progress) == 20.0
    lrs = jax.tree.leaves(result.state.meta_params.inner_lrs)
    assert all(x.shape == (2,) for x in lrs)
    assert any(not np.allclose(x, config.inner_lr) for x in lrs)  # LSLR learned
    scores = result.test[1]
    assert scores["loss"].mean < scores["loss_before"].mean


def test_a_tiny_baseline_run_pretrains_on_all_training_classes_and_is_scored(tmp_path):
    import json

    from tiny_runs import fake_omniglot, tiny_omniglot

    from jmeta.datasets import load
    from jmeta.train import evaluate_checkpoint

    data = fake_omniglot(tmp_path / "omniglot")
    config = tiny_omniglot(tmp_path / "run", data, algorithm="baseline", keep_best=True)
    with jax.numpy_dtype_promotion("standard"):
        result = train(config, progress=False)
        scores, step = evaluate_checkpoint(tmp_path / "run")
    meta = result.state.meta_params
    characters = load("omniglot", "minimal-train", data_dir=str(data), image_size=16)
    assert meta.classifier["kernel"].shape[1] == 4 * characters.images.shape[0]  # rotations
    assert meta.feature_mean.shape == (meta.classifier["kernel"].shape[0],)
    assert float(jnp.linalg.norm(meta.feature_mean)) > 0  # the centre was tracked
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert step == results["tested_step"] == results["best"]["step"]
    assert scores[1]["accuracy"].mean == results["test"]["1"]["accuracy"]["mean"]

    # jmeta predict sizes the baseline's classifier from the run's training split; the support
    # images themselves are their own (CL2N) centroids, so each is predicted as its class.
    import shutil

    from jmeta.train import predict

    support = tmp_path / "support"
    chosen = sorted((data / "images_background_small2" / "Sanskrit").iterdir())[:3]
    for character in chosen:
        (support / character.name).mkdir(parents=True)
        shutil.copy(sorted(character.glob("*.png"))[0], support / character.name / "a.png")
    queries = sorted(support.glob("*/a.png"))
    with jax.numpy_dtype_promotion("standard"):
        found = predict(tmp_path / "run", support, queries)
    assert found.labels == tuple(c.name for c in chosen)


def test_resuming_a_cosine_run_with_other_num_steps_is_refused(tmp_path, capsys):
    """The cosine schedule spans num_steps: a new length would reshape the remaining steps."""
    from tiny_runs import run_cli

    config = tiny_sinusoid(tmp_path / "run", algorithm="mamlpp", inner_steps=2, num_steps=10)
    with jax.numpy_dtype_promotion("standard"):
        train(config, progress=False)
    saved = (tmp_path / "run" / "config.json").read_text()
    message = (
        "--resume: --num-steps 20 differs from the run's 10, and its cosine --meta-lr-schedule "
        "anneals over --num-steps: the steps taken followed the schedule to step 10, and a new "
        "length would reshape the rest. Resume with --num-steps 10, or start again with "
        "--overwrite."
    )
    with pytest.raises(ValueError) as info:
        train(config.replace(num_steps=20), resume=True, progress=False)
    assert str(info.value) == message
    argv = ["train", "--resume", "--output-dir", tmp_path / "run", "--num-steps", "20"]
    status, _, err = run_cli(argv, capsys)
    assert status == 2 and err.strip().splitlines()[-1] == f"jmeta train: error: {message}"
    assert (tmp_path / "run" / "config.json").read_text() == saved
