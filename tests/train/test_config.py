import json

import pytest

from jmeta.train import PRESETS, TrainConfig, config_from_dict, load_config, resolve_config


def test_sinusoid_defaults_are_the_maml_paper_settings():
    config = resolve_config(TrainConfig())
    assert (config.algorithm, config.dataset, config.model, config.width) == (
        "maml",
        "sinusoid",
        "mlp",
        40,
    )
    assert (config.shots, config.queries, config.meta_batch_size) == (10, 10, 25)
    assert (config.inner_steps, config.inner_lr, config.test_inner_lr) == (1, 0.01, 0.01)
    assert (config.meta_optimizer, config.meta_lr) == ("adam", 1e-3)
    assert config.test_inner_steps == (1, 10) and config.eval_tasks == 600
    assert config.ways is None and config.rotations is None


def test_omniglot_defaults_and_explicit_values_win():
    config = resolve_config(TrainConfig(dataset="omniglot", inner_lr=0.1, ways=20))
    assert config.train_split == "minimal-train" and config.rotations is True
    assert (config.ways, config.shots, config.inner_lr) == (20, 1, 0.1)
    assert (config.queries, config.test_queries) == (1, 15)  # MAML trains with K queries
    assert config.model == "conv4" and config.width == 64 and config.test_inner_steps == (3,)
    assert config.test_inner_lr == 0.1
    assert resolve_config(config) == config  # idempotent
    assert resolve_config(TrainConfig(dataset="tfds:omniglot")).val_split == "none"
    assert set(PRESETS) >= {"sinusoid", "omniglot", "mini_imagenet", "cifar_fs", "fc100"}


@pytest.mark.parametrize(
    "changes, error, match",
    [
        ({"algorithm": "nope"}, ValueError, r"--algo: unknown algorithm 'nope'"),
        ({"dataset": "mnist"}, ValueError, r"--dataset: unknown data set 'mnist'"),
        ({"ways": 5}, ValueError, "--ways does not apply to sinusoid"),
        ({"augment": True}, ValueError, "--augment does not apply to sinusoid"),
        ({"shots": 0}, ValueError, "--shots must be >= 1; got 0"),
        ({"shots": 2.5}, TypeError, "--shots must be an integer; got 2.5"),
        ({"inner_lr": float("nan")}, ValueError, "--inner-lr must be a finite number > 0"),
        ({"meta_lr": "big"}, TypeError, "--meta-lr must be a number"),
        ({"test_inner_steps": ()}, ValueError, "--test-inner-steps must be one or more"),
        ({"model": "conv4"}, ValueError, "sinusoid regression needs mlp"),
        (
            {"meta_optimizer": "lamb"},
            ValueError,
            r"--meta-optimizer must be one of \['adam', 'sgd'\]",
        ),
        (
            {"steps_per_call": 300},
            ValueError,
            r"--eval-interval \(5000\) must be a multiple of --steps-per-call \(300\)",
        ),
        ({"eval_tasks": 1}, ValueError, ">= 2 for a confidence interval"),
        ({"first_order": 1}, TypeError, "--first-order must be true or false"),
    ],
)
def test_bad_values_name_the_flag(changes, error, match):
    with pytest.raises(error, match=match):
        resolve_config(TrainConfig(**changes))


def test_image_datasets_reject_the_mlp():
    with pytest.raises(ValueError, match="--model mlp takes vectors; omniglot needs conv4"):
        resolve_config(TrainConfig(dataset="omniglot", model="mlp"))
    with pytest.raises(ValueError, match="--train-split cannot be 'none'"):
        resolve_config(TrainConfig(dataset="omniglot", train_split="none"))


def test_config_files_toml_and_json(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('algorithm = "fomaml"\nnum-steps = 200\ntest_inner_steps = [1, 5]\n')
    config = config_from_dict(load_config(toml))
    assert config.algorithm == "fomaml" and config.num_steps == 200
    assert config.test_inner_steps == (1, 5)
    js = tmp_path / "run.json"
    js.write_text(json.dumps({"seed": 3, "test_inner_steps": 2}))
    assert config_from_dict(load_config(js), base=config) == config.replace(
        seed=3, test_inner_steps=(2,)
    )
    roundtrip = resolve_config(config_from_dict(resolve_config(config).to_dict()))
    assert roundtrip == resolve_config(config)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("num_steps = = 3")
    with pytest.raises(ValueError, match="could not parse .*bad.toml as TOML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="--config: no such file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['steps'\]"):
        config_from_dict({"steps": 3})


def test_every_registered_algorithm_builds_a_learner_for_sinusoid_and_conv4():
    """Each entry turns a spec into a MetaLearner whose meta-loss traces (shapes only),
    on the network the trainer builds for it, for each kind of data it accepts."""
    import jax

    import jmeta
    from jmeta.train import ALGORITHMS, LearnerSpec, register_algorithm
    from jmeta.train.algorithms import EMBEDDING_ALGORITHMS, EXTRA_INPUTS
    from jmeta.train.problem import build_model

    task = jmeta.tasks.sinusoid(jax.random.key(0))
    images = jax.ShapeDtypeStruct((10, 4, 16, 16, 1), jax.numpy.uint8)
    image_task = jax.eval_shape(
        lambda k, x: jmeta.tasks.few_shot(k, x, ways=3, shots=1, queries=1),
        jax.random.key(0),
        images,
    )
    regression = (TrainConfig(model="mlp", width=8), None, jmeta.losses.mse, {}, task)
    classification = (
        TrainConfig(dataset="omniglot", model="conv4", ways=3, shots=1, width=4),
        (16, 16, 1),
        jmeta.losses.cross_entropy,
        {"accuracy": jmeta.losses.accuracy},
        image_task,
    )
    for name, build in ALGORITHMS.items():
        cases = [regression] * (name not in EMBEDDING_ALGORITHMS)
        cases += [classification] * (name not in EXTRA_INPUTS)
        for config, image_shape, loss_fn, metrics, example in cases:
            config = config.replace(algorithm=name)
            model = build_model(config, image_shape)
            spec = LearnerSpec(config, model, loss_fn, metrics, 0.1, 1, True)
            learner = build(spec)
            meta_params = jax.eval_shape(lambda: learner.init(model.init(jax.random.key(0))))
            loss, _ = jax.eval_shape(learner.meta_loss, meta_params, example, jax.random.key(1))
            assert loss.shape == (), name
    with pytest.raises(ValueError, match="'maml' is already registered"):
        register_algorithm("maml", ALGORITHMS["maml"])
