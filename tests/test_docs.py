"""The examples in the docs run."""

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def examples(name, after_heading):
    text = (DOCS / name).read_text()
    section = text[text.index(after_heading) :]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.mark.parametrize("index", [0, 1])
def test_write_your_own_algorithm_examples_run(index):
    blocks = examples("algorithms.md", "## Write your own algorithm")
    assert len(blocks) == 2
    exec(compile(blocks[index], f"docs/algorithms.md example {index}", "exec"), {})


def test_training_register_algorithm_example_runs():
    from jmeta.train import ALGORITHMS, LearnerSpec, TrainConfig
    from jmeta.train.problem import build_model

    (block,) = examples("training.md", "## Algorithms")[:1]
    try:
        exec(compile(block, "docs/training.md register example", "exec"), {})
        config = TrainConfig(model="mlp", width=8)
        model = build_model(config, None)
        import jmeta

        spec = LearnerSpec(config, model, jmeta.losses.mse, {}, 0.01, 1, True)
        assert isinstance(ALGORITHMS["fomaml_adam"](spec), jmeta.MetaLearner)
    finally:
        ALGORITHMS.pop("fomaml_adam", None)
