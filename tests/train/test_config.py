import dataclasses
import json
import pickle

import jax
import numpy as np
import pytest

import jmeta
from jmeta.train import (
    ALGORITHMS,
    PRESETS,
    Algorithm,
    ConfigError,
    ConfigValueError,
    LearnerSpec,
    TrainConfig,
    config_from_dict,
    evaluate_checkpoint,
    load_config,
    register_algorithm,
    resolve_config,
)
from jmeta.train.config import FIELDS, default_text


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


def test_presets_are_applied_at_construction_and_every_field_is_set():
    """No resolve step: a constructed config is complete; None only where a field does not apply."""
    for dataset in ("sinusoid", "omniglot", "mini_imagenet", "cifar_fs", "fc100", "tfds:x"):
        config = TrainConfig(dataset=dataset)
        for name, field in FIELDS.items():
            value = getattr(config, name)
            if value is None:
                assert field.optional, (dataset, name)
            else:
                assert isinstance(value, field.kind), (dataset, name, value)
        if dataset != "sinusoid":
            assert config.ways == 5 and isinstance(config.rotations, bool)
    assert TrainConfig(dataset="mini_imagenet").width == 32
    assert TrainConfig(dataset="cifar_fs").width == 64
    assert dict(PRESETS["omniglot"])["inner_lr"] == 0.4


def test_replace_derives_the_fields_that_were_not_given_again():
    config = TrainConfig(ways=None, inner_lr=0.1)  # sinusoid
    omniglot = config.replace(dataset="omniglot")
    assert (omniglot.ways, omniglot.model, omniglot.shots) == (5, "conv4", 1)  # its presets
    assert omniglot.inner_lr == 0.1 and omniglot.test_inner_lr == 0.1  # given: kept
    assert omniglot.replace(dataset="sinusoid") == config
    assert config.replace(inner_lr=0.2).test_inner_lr == 0.2  # derived from inner_lr again
    assert config.replace(test_inner_lr=0.3).replace(inner_lr=0.2).test_inner_lr == 0.3
    fixed = TrainConfig(dataset="omniglot", ways=20)
    assert fixed.replace(dataset="mini_imagenet").ways == 20
    with pytest.raises(ConfigValueError, match=r"unknown config field\(s\) \['steps'\]"):
        config.replace(steps=3)


@pytest.mark.parametrize(
    "changes, error, match",
    [
        ({"algorithm": "nope"}, ValueError, r"^algorithm: unknown algorithm 'nope'"),
        ({"dataset": "mnist"}, ValueError, r"^dataset: unknown data set 'mnist'"),
        ({"ways": 5}, ValueError, "^ways does not apply to sinusoid"),
        ({"augment": True}, ValueError, "^augment does not apply to sinusoid"),
        ({"shots": 0}, ValueError, "^shots must be >= 1; got 0"),
        ({"shots": 2.5}, TypeError, "^shots must be an integer; got 2.5"),
        ({"inner_lr": float("nan")}, ValueError, "^inner_lr must be a finite number > 0"),
        ({"meta_lr": "big"}, TypeError, "^meta_lr must be a number"),
        ({"test_inner_steps": ()}, ValueError, "^test_inner_steps must be one or more"),
        ({"model": "conv4"}, ValueError, "sinusoid regression needs mlp"),
        (
            {"meta_optimizer": "lamb"},
            ValueError,
            r"^meta_optimizer must be one of \['adam', 'sgd'\]",
        ),
        (
            {"steps_per_call": 300},
            ValueError,
            r"^eval_interval \(5000\) must be a multiple of steps_per_call \(300\)",
        ),
        ({"eval_tasks": 1}, ValueError, "^eval_tasks must be >= 2 for a confidence interval"),
        ({"first_order": 1}, TypeError, "^first_order must be true or false"),
        ({"algorithm": ["maml"]}, TypeError, r"^algorithm must be a string; got \['maml'\]"),
        ({"test_inner_steps": [1, "5"]}, TypeError, "^test_inner_steps must be one or more int"),
        ({"algorithm": "protonet"}, ValueError, "^algorithm protonet classifies by comparing"),
    ],
)
def test_bad_values_name_the_field(changes, error, match):
    with pytest.raises(error, match=match) as info:
        resolve_config(TrainConfig(**changes))
    assert isinstance(info.value, ConfigError)
    assert "--" not in str(info.value)  # the library names fields, the CLI names flags


def test_the_cli_can_name_the_same_error_by_flag():
    with pytest.raises(ConfigError) as info:
        TrainConfig(algorithm="mamll")
    assert str(info.value).startswith("algorithm: unknown algorithm 'mamll'")
    assert info.value.fields == ("algorithm",)
    assert info.value.render(lambda f: "--algo").startswith("--algo: unknown algorithm 'mamll'")
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is ConfigValueError and str(again) == str(info.value)
    renamed = info.value.renamed({"algorithm": "name"})
    assert str(renamed).startswith("name: unknown algorithm") and renamed.fields == ("name",)


@pytest.mark.parametrize(
    "changes, match",
    [
        # Seeds are uint32 (jax.random.key of a traced uint32); validation uses eval_seed + 1.
        ({"seed": 2**32}, r"^seed must be <= 4294967295 \(seeds are uint32\); got 4294967296"),
        ({"seed": -1}, "^seed must be >= 0; got -1"),
        ({"eval_seed": 2**32 - 1}, r"^eval_seed must be <= 4294967294 \(seeds are uint32"),
        ({"eval_seed": 10**23}, "^eval_seed must be <= 4294967294 .*; got 1" + "0" * 23),
        # The step counter of MetaTrainState is int32.
        ({"num_steps": 3_000_000_000}, r"^num_steps must be <= 2147483647 \(the step counter"),
        ({"steps_per_call": 2**31}, "^steps_per_call must be <= 2147483647"),
        ({"eval_tasks": 2**31}, r"^eval_tasks must be <= 2147483647 \(sizes are int32"),
        ({"meta_batch_size": 2**31}, "^meta_batch_size must be <= 2147483647"),
        ({"test_inner_steps": (1, 2**31)}, "^test_inner_steps must be <= 2147483647"),
        ({"meta_lr": 1e39}, "^meta_lr must lie between 1.4e-45 and 3.4e.38 to be a float32"),
        ({"inner_lr": 1e-46}, "^inner_lr must lie between 1.4e-45 and 3.4e.38 to be a float32"),
    ],
)
def test_values_beyond_what_the_code_can_represent_are_refused(changes, match):
    with pytest.raises(ConfigValueError, match=match):
        TrainConfig(**changes)


def test_the_largest_seeds_are_usable_and_small_seeds_keep_their_keys():
    """initial_state traces the seed as uint32: seeds up to 2**32 - 1 work, and a seed below
    2**31 gives the keys it gave as int32 (the keys of jax.random.key(seed))."""
    import optax

    from jmeta.train.build import initial_state, run_keys

    model = jmeta.models.mlp((1, 4, 1))
    learner = jmeta.maml(model.apply, jmeta.losses.mse, inner_lr=0.1)
    step = jmeta.meta_train_step(learner, optax.sgd(0.1))
    for seed in (5, 2**31 + 7, 2**32 - 1):
        config = TrainConfig(seed=seed)
        _, key = initial_state(step, learner, model, config.seed, abstract=True)
        expected = run_keys(seed)[1]  # Python int: jax.random.key's 64-bit seed path
        np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(expected))
        assert (
            jax.random.key_data(key).tolist()
            == jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1)).tolist()
        )
    # The largest eval_seed, and validation's eval_seed + 1, name task sets too.
    largest = TrainConfig(eval_seed=2**32 - 2).eval_seed
    assert jmeta.evaluation.task_keys(largest + 1, 2).shape == (2,)


def test_image_datasets_reject_the_mlp():
    with pytest.raises(ValueError, match="^model mlp takes vectors; omniglot needs conv4"):
        resolve_config(TrainConfig(dataset="omniglot", model="mlp"))
    with pytest.raises(ValueError, match="^train_split cannot be 'none'"):
        resolve_config(TrainConfig(dataset="omniglot", train_split="none"))
    with pytest.raises(ValueError, match="^test_split: omniglot has no split 'tset'"):
        TrainConfig(dataset="omniglot", test_split="tset")
    with pytest.raises(ValueError, match="^algorithm cavia feeds its context to an MLP"):
        TrainConfig(dataset="omniglot", algorithm="cavia")


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
    with pytest.raises(FileNotFoundError, match="^no such file: .*missing.toml"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['steps'\]"):
        config_from_dict({"steps": 3})
    bad.write_text("steps = 3")
    with pytest.raises(ValueError, match=r"bad.toml: unknown config field\(s\) \['steps'\]"):
        load_config(bad)


@pytest.mark.parametrize(
    "name, text",
    [
        ("both.toml", "num-steps = 10\nnum_steps = 20\n"),
        ("both.json", '{"num-steps": 10, "num_steps": 20}'),
    ],
)
def test_a_config_file_naming_a_field_twice_is_refused(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(
        ValueError, match=f"{name}: 'num-steps' and 'num_steps' both set the field num_steps"
    ):
        load_config(path)


def test_a_json_config_with_a_repeated_key_is_refused(tmp_path):
    path = tmp_path / "twice.json"
    path.write_text('{"seed": 1, "nested": {"seed": 2}, "seed": 3}')
    with pytest.raises(ValueError, match="'seed' and 'seed' both set the field seed"):
        load_config(path)


@pytest.mark.parametrize(
    "text, error, match",
    [
        ('algorithm = ["maml"]', TypeError, r"^algorithm must be a string; got \['maml'\]"),
        ('num_steps = "100"', TypeError, "^num_steps must be an integer; got '100'"),
        ("meta_lr = true", TypeError, "^meta_lr must be a number; got True"),
        ("first_order = 1", TypeError, "^first_order must be true or false; got 1"),
        ("[seed]\nx = 1", TypeError, r"^seed must be an integer; got \{'x': 1\}"),
        ("eval_seed = 1e23", TypeError, "^eval_seed must be an integer; got 1e"),
    ],
)
def test_a_config_file_value_of_the_wrong_type_names_field_and_type(tmp_path, text, error, match):
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(error, match=match):
        config_from_dict(load_config(path))


def test_evaluate_checkpoint_names_its_own_arguments(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    with pytest.raises(ValueError, match="^num_tasks must be >= 2 for a confidence interval"):
        evaluate_checkpoint(tmp_path, num_tasks=1)
    with pytest.raises(ValueError, match=r"^seed must be <= 4294967294 \(seeds are uint32"):
        evaluate_checkpoint(tmp_path, seed=2**32)
    with pytest.raises(ValueError, match="^inner_steps must be >= 0; got -1"):
        evaluate_checkpoint(tmp_path, inner_steps=(1, -1))


def test_every_field_is_declared_once_with_its_help_and_kind():
    """The fields drive the flags, presets and docs: each has a help line, a kind the command
    line can parse, and a default or a preset; PRESETS is derived from them."""
    assert list(FIELDS) == [f.name for f in dataclasses.fields(TrainConfig)]
    for name, field in FIELDS.items():
        assert field.setting.help, name
        assert field.kind in (int, float, bool, str, tuple), name
        assert field.default is not None or field.derived or field.optional, name
        assert "default: " in default_text(field) and name in (TrainConfig.__doc__ or "")
    for dataset, preset in PRESETS.items():
        for name in preset:
            assert FIELDS[name].setting.preset is not None, (dataset, name)
    with pytest.raises(TypeError):
        PRESETS["omniglot"]["ways"] = 3  # derived, read-only


def test_conv_impl_auto_is_the_models_default():
    from jmeta.train.problem import conv_impl

    assert conv_impl("auto") == jmeta.models.DEFAULT_CONV_IMPL
    assert conv_impl("xla") == "xla"
    assert jmeta.models.DEFAULT_CONV_IMPL_REASON in FIELDS["conv_impl"].setting.help


def test_every_registered_algorithm_builds_a_learner_for_sinusoid_and_conv4():
    """Each entry turns a spec into a MetaLearner whose meta-loss traces (shapes only),
    on the network the trainer builds for it, for each kind of data it accepts."""
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
        cases = [regression] * (not ALGORITHMS[name].embedding)
        cases += [classification] * (not ALGORITHMS[name].extra_inputs)
        for config, image_shape, loss_fn, metrics, example in cases:
            config = config.replace(algorithm=name)
            model = build_model(config, image_shape)
            classes = None if image_shape is None else 10
            spec = LearnerSpec(config, model, loss_fn, metrics, 0.1, 1, True,
                                input_shape=image_shape, train_classes=classes)  # fmt: skip
            learner = build(spec)
            params = jax.eval_shape(model.init, jax.random.key(0))
            meta_params = jax.eval_shape(learner.init, params)
            loss, _ = jax.eval_shape(learner.meta_loss, meta_params, example, jax.random.key(1))
            assert loss.shape == (), name
    with pytest.raises(ValueError, match="'maml' is already registered"):
        register_algorithm("maml", ALGORITHMS["maml"])


def test_one_registry_record_per_algorithm():
    assert all(isinstance(record, Algorithm) for record in ALGORITHMS.values())
    assert {n for n, r in ALGORITHMS.items() if r.embedding} == {
        "protonet",
        "matching_net",
        "r2d2",
        "baseline",
    }
    assert {n: r.extra_inputs for n, r in ALGORITHMS.items() if r.extra_inputs} == {"cavia": 5}
    build = ALGORITHMS["protonet"].build
    try:
        record = register_algorithm("my_metric", build, embedding=True)
        assert ALGORITHMS["my_metric"] is record and record.embedding
        with pytest.raises(ValueError, match="^algorithm my_metric classifies by comparing"):
            TrainConfig(algorithm="my_metric")
        assert TrainConfig(algorithm="my_metric", dataset="omniglot").algorithm == "my_metric"
    finally:
        ALGORITHMS.pop("my_metric", None)
    with pytest.raises(ValueError, match="extra_inputs must be >= 0; got -1"):
        register_algorithm("x", build, extra_inputs=-1)
    with pytest.raises(TypeError, match="build must be callable"):
        register_algorithm("x", None)
    assert "x" not in ALGORITHMS


def test_docs_list_every_field():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "training.md").read_text()
    table = text[text.index("## Configuration") : text.index("### Config files")]
    assert [name for name in FIELDS if f"`{name}`" not in table] == []
