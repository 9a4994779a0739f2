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
