"""``jmeta predict`` / ``jmeta.train.predict``: your own images, converted as the run's data.

Two tiny runs on the fake Omniglot release (MAML, a 3-way head; ProtoNets) serve every
test; the real-data test is in tests/train/test_real_omniglot.py (it shares that file's run).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image
from predict_helpers import agreement, write_tasks
from tiny_runs import fake_omniglot, run_cli, tiny_omniglot

from jmeta.datasets import ImageConversion, dataset_conversion, load
from jmeta.train import InputNotFound, InputValueError, Predictions, predict, saved_config, train

REPO = Path(__file__).resolve().parents[2]
FAST = {"num_steps": 3, "steps_per_call": 3, "eval_interval": 0, "checkpoint_interval": 0}


def _train(root: Path, **changes) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JMETA_CACHE", str(root / "cache"))
        data = fake_omniglot(root / "data")
        with jax.numpy_dtype_promotion("standard"):  # optax.adam
            train(tiny_omniglot(root / "run", data, **{**FAST, **changes}), progress=False)
    return root / "run"


@pytest.fixture(scope="module")
def maml_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("maml"))


@pytest.fixture(scope="module")
def protonet_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("protonet"), algorithm="protonet")


def ink(value: int, size: int = 16) -> np.ndarray:
    """A black-on-white grey image: a square of ink ``value`` on white."""
    img = np.full((size, size), 255, np.uint8)
    img[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255 - value
    return img


def write_support(root: Path, classes: dict[str, list[int]], fmt: str = "PNG") -> Path:
    for name, values in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, value in enumerate(values):
            Image.fromarray(ink(value)).save(root / name / f"{i}.{fmt.lower()}", format=fmt)
    return root


@pytest.fixture
def images(tmp_path) -> tuple[Path, Path]:
    """A 3-class support folder and a query folder of 2 images."""
    support = write_support(tmp_path / "support", {"a": [40], "b": [120], "c": [220]})
    query = tmp_path / "query"
    query.mkdir()
    Image.fromarray(ink(45)).save(query / "q1.png")
    Image.fromarray(ink(210)).save(query / "q2.png")
    return support, query


# --- the conversion --------------------------------------------------------------------------


def test_a_new_run_records_its_conversion_in_its_marker(maml_run):
    record = json.loads((maml_run / "jmeta-run.json").read_text())
    assert record["images"] == {"height": 16, "width": 16, "channels": 1, "invert": True}


def test_conversions_derived_from_the_data_set_name():
    assert dataset_conversion("omniglot", None) == ImageConversion(28, 28, 1, True)
    assert dataset_conversion("omniglot", 16) == ImageConversion(16, 16, 1, True)
    assert dataset_conversion("mini_imagenet", None) == ImageConversion(84, 84, 3, False)
    assert dataset_conversion("cifar_fs", None) == ImageConversion(32, 32, 3, False)
    with pytest.raises(ValueError, match="'tfds:mnist' cannot be derived from its name"):
        dataset_conversion("tfds:mnist", None)


def test_any_size_mode_and_format_becomes_the_training_layout(tmp_path):
    conversion = ImageConversion(16, 16, 1, invert=True)
    grey = ink(100, size=64)
    expected = conversion.convert(Image.fromarray(grey))
    assert expected.shape == (16, 16, 1) and expected.dtype == np.uint8
    assert expected[8, 8, 0] == 100 and expected[0, 0, 0] == 0  # ink high, background 0
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for name, image in {
        "rgb.png": Image.fromarray(rgb),
        "rgba.png": Image.fromarray(rgb).convert("RGBA"),
        "palette.gif": Image.fromarray(grey).convert("P"),
        "grey.bmp": Image.fromarray(grey),
        "grey.tiff": Image.fromarray(grey),
    }.items():
        image.save(tmp_path / name)
        np.testing.assert_array_equal(conversion.load(tmp_path / name), expected, err_msg=name)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=95)
    assert np.abs(conversion.load(tmp_path / "photo.jpg").astype(int) - expected).max() <= 3
    Image.fromarray(grey[:, :40]).save(tmp_path / "wide.png")
    assert ImageConversion(8, 12, 3, False).load(tmp_path / "wide.png").shape == (8, 12, 3)


def test_a_release_png_converts_exactly_as_the_loader_decodes_it(tmp_path):
    data = fake_omniglot(tmp_path / "data")
    split = load("omniglot", "minimal-test", data_dir=data, image_size=16,
                 cache_dir=tmp_path / "cache")  # fmt: skip
    files = sorted((data / "images_background_small2" / "Sanskrit" / "character01").iterdir())
    conversion = dataset_conversion("omniglot", 16)
    index = split.class_names.index("Sanskrit/character01")
    for e, path in enumerate(files):
        np.testing.assert_array_equal(conversion.load(path), split.images[index, e])


# --- predictions -----------------------------------------------------------------------------


def test_predict_equals_eval_on_the_same_tasks(maml_run, tmp_path, monkeypatch):
    monkeypatch.setenv("JMETA_CACHE", str(maml_run.parent / "cache"))
    scores = agreement(maml_run, tmp_path, num_tasks=3)
    assert scores["predict"] == pytest.approx(scores["eval"], abs=1e-6)


def test_predictions_table_json_and_csv(maml_run, images):
    support, query = images
    out = predict(maml_run, support, [query / "q1.png", query])
    assert isinstance(out, Predictions)
    assert out.classes == ("a", "b", "c") and out.step == 3
    assert [f.name for f in out.files] == ["q1.png", "q1.png", "q2.png"]
    assert out.probabilities.shape == (3, 3)
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1, rtol=1e-5)
    row = out.rows()[0]
    assert row["class"] == out.labels[0] and row["runner_up"] != row["class"]
    assert row["probability"] >= row["runner_up_probability"]
    assert out.table().splitlines()[0].split() == [
        "file", "predicted", "probability", "runner-up", "probability",
    ]  # fmt: skip
    assert json.loads(json.dumps(out.to_json()))["predictions"] == out.rows()
    assert out.to_csv().splitlines()[0] == "file,class,probability,runner_up,runner_up_probability"


def test_a_run_without_a_recorded_conversion_derives_it(maml_run, images, tmp_path):
    support, query = images
    old = shutil.copytree(maml_run, tmp_path / "old")
    record = json.loads((old / "jmeta-run.json").read_text())
    del record["images"]
    (old / "jmeta-run.json").write_text(json.dumps(record))
    np.testing.assert_array_equal(
        predict(old, support, query).probabilities, predict(maml_run, support, query).probabilities
    )


def test_a_gradient_based_head_takes_fewer_classes_than_its_ways(maml_run, images, tmp_path):
    support, query = images
    shutil.rmtree(support / "c")
    out = predict(maml_run, support, query)
    assert out.classes == ("a", "b") and out.probabilities.shape == (2, 2)
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1, rtol=1e-5)


def test_a_metric_learner_takes_any_number_of_classes_and_unbalanced_ones(protonet_run, tmp_path):
    classes = {"a": [30], "b": [90], "c": [150], "d": [230]}  # 4 classes; the run trained 3-way
    balanced = write_support(tmp_path / "balanced", classes)
    query = write_support(tmp_path / "q", {"x": [35, 140, 225]}) / "x"
    out = predict(protonet_run, balanced, query)
    assert out.classes == ("a", "b", "c", "d")
    # A repeated image leaves a prototype (the class mean) as it was: same probabilities.
    unbalanced = write_support(tmp_path / "unbalanced", {**classes, "a": [30, 30, 30]})
    np.testing.assert_allclose(
        predict(protonet_run, unbalanced, query).probabilities, out.probabilities, atol=1e-6
    )


def test_skip_bad_skips_and_names_unreadable_files(maml_run, images):
    support, query = images
    (support / "a" / "notes.txt").write_text("not an image")
    (query / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = predict(maml_run, support, query, skip_bad=True)
    assert sorted(p.name for p, _ in out.skipped) == ["broken.png", "notes.txt"]
    assert [f.name for f in out.files] == ["q1.png", "q2.png"]


# --- bad input: one line naming the path (library: the argument; CLI: the flag) ---------------


def _bad_inputs(run: Path, support: Path, query: Path, tmp: Path):
    """``(case, arguments, exception type, message fragment)``."""
    empty = write_support(tmp / "empty", {"a": [40], "b": []})
    single = write_support(tmp / "single", {"a": [40, 50]})
    four = write_support(tmp / "four", {"a": [40], "b": [80], "c": [120], "d": [160]})
    unreadable = shutil.copytree(support, tmp / "unreadable")
    (unreadable / "b" / "scan.png").write_text("not an image")
    no_images = tmp / "no_images"
    (no_images / "sub").mkdir(parents=True)
    (no_images / ".hidden.png").write_bytes(b"")
    not_a_run = tmp / "not_a_run"
    not_a_run.mkdir()
    return [
        ("empty class", (run, empty, query), InputValueError,
         f"support: the class folder {empty / 'b'} holds no image; every class needs at least"),
        ("one class", (run, single, query), InputValueError,
         f"support: {single} must hold one folder per class, at least 2 classes; found only 'a'"),
        ("too many classes", (run, four, query), InputValueError,
         f"support: {four} holds 4 class folders, but the run's maml head has 3 outputs"),
        ("unreadable", (run, unreadable, query), InputValueError,
         f"support: cannot read {unreadable / 'b' / 'scan.png'} as an image: not an image "
         "format Pillow reads. Pass skip_bad to skip unreadable files."),
        ("query folder without images", (run, support, no_images), InputValueError,
         f"queries: the folder {no_images} holds no image files."),
        ("missing query", (run, support, tmp / "nope.png"), InputNotFound,
         f"queries: no such file or folder {tmp / 'nope.png'}."),
        ("support not a folder", (run, query / "q1.png", query), InputNotFound,
         f"support: expected a folder of class folders at {query / 'q1.png'}; found a file."),
        ("not a run", (not_a_run, support, query), InputNotFound,
         f"run: {not_a_run} is not a jmeta run: {not_a_run} has no jmeta-run.json"),
        ("missing run", (tmp / "gone", support, query), InputNotFound,
         f"run: {tmp / 'gone'}: no such folder."),
        ("a file as run", (query / "q1.png", support, query), InputNotFound,
         f"run: {query / 'q1.png'}: a file, not a run folder."),
    ]  # fmt: skip


def test_bad_input_raises_one_line_naming_the_argument_and_path(maml_run, images, tmp_path):
    for case, args, kind, message in _bad_inputs(maml_run, *images, tmp_path):
        with pytest.raises(kind) as info:
            predict(*args)
        assert message in str(info.value), case
        assert "\n" not in str(info.value), case


def test_a_regression_run_is_refused(finished, images):
    with pytest.raises(InputValueError, match="is sinusoid regression; predict classifies images"):
        predict(finished, *images)


def test_a_query_folder_of_only_unreadable_files_is_an_error_even_when_skipping(
    maml_run, images, tmp_path
):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_text("x")
    with pytest.raises(InputValueError, match=f"queries: the folder {bad} holds no readable"):
        predict(maml_run, images[0], bad, skip_bad=True)


# --- the command -----------------------------------------------------------------------------


def test_cli_prints_the_table_and_writes_json_and_csv(maml_run, images, tmp_path, capsys):
    support, query = images
    (query / "junk.txt").write_text("x")
    argv = ["predict", "--checkpoint", str(maml_run / "checkpoints" / "3"), "--support",
            str(support), "--query", str(query), "--json", str(tmp_path / "p.json"),
            "--csv", str(tmp_path / "p.csv"), "--skip-bad"]  # fmt: skip
    status, out, err = run_cli(argv, capsys)
    assert status == 0, err
    assert err.startswith(f"jmeta predict: skipped {query / 'junk.txt'}: cannot read")
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["file", "predicted"] and len(lines) == 3
    written = json.loads((tmp_path / "p.json").read_text())
    assert written["classes"] == ["a", "b", "c"] and len(written["predictions"]) == 2
    assert written["skipped"][0]["file"] == str(query / "junk.txt")
    assert (tmp_path / "p.csv").read_text().count("\n") == 3


def test_cli_errors_name_the_flag_and_path(maml_run, images, tmp_path, capsys):
    flags = {"support": "--support", "queries": "--query", "run": "--checkpoint"}
    for case, (run, support, query), _, message in _bad_inputs(maml_run, *images, tmp_path):
        argv = ["predict", "--checkpoint", str(run), "--support", str(support),
                "--query", str(query)]  # fmt: skip
        status, _, err = run_cli(argv, capsys)
        argument = message.split(":", 1)[0]
        expected = flags[argument] + message[len(argument) :]
        expected = expected.replace("Pass skip_bad", "Pass --skip-bad")
        assert status == 2, case
        (line,) = [line for line in err.splitlines() if "error:" in line]
        assert line.startswith("jmeta predict: error: ") and expected in line, (case, err)


# The acceptance test (real Omniglot, held-out alphabets) shares the real-data run of
# tests/train/test_real_omniglot.py: test_predict_equals_eval_on_real_omniglot there.


def test_write_tasks_uses_the_release_files(maml_run, tmp_path, monkeypatch):
    monkeypatch.setenv("JMETA_CACHE", str(maml_run.parent / "cache"))
    ((support, query, labels),) = write_tasks(saved_config(maml_run), tmp_path, 1)
    assert len(list(query.iterdir())) == len(labels) == 6
    assert sorted(p.name for p in support.iterdir()) == ["00_class", "01_class", "02_class"]


def test_inner_steps_set_the_adaptation_and_are_checked(maml_run, images, capsys):
    before = predict(maml_run, *images, inner_steps=0).probabilities
    after = predict(maml_run, *images, inner_steps=2).probabilities
    assert np.abs(before - after).max() > 1e-4
    with pytest.raises(InputValueError, match=r"^inner_steps must be an integer >= 0; got -1\.$"):
        predict(maml_run, *images, inner_steps=-1)
    argv = ["predict", "--checkpoint", str(maml_run), "--support", str(images[0]),
            "--query", str(images[1]), "--inner-steps", "-1"]  # fmt: skip
    status, _, err = run_cli(argv, capsys)
    assert status == 2 and "error: --inner-steps must be an integer >= 0; got -1." in err
