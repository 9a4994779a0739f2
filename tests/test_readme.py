"""The README's set-up commands are CI's, and its library example runs."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_exactly_two_setup_commands_and_ci_runs_the_second():
    setup = README[README.index("## Set up") : README.index("## Use it as a library")]
    commands = re.findall(r"```sh\n(.*?)\n```", setup, flags=re.DOTALL)
    assert commands == [
        "pip install -e . && jmeta train",
        'pip install -e ".[test]" && python -m pytest -n 2',
    ]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci  # the very line CI runs


def test_every_linked_file_exists():
    for target in re.findall(r"\]\(((?!https?://)[^)#]+)\)", README):
        assert (ROOT / target).exists(), target


@pytest.mark.standard_promotion  # optax.adam
@pytest.mark.parametrize("index", [0, 1])
def test_library_examples_run(index, capsys):
    examples = blocks("python")
    assert len(examples) == 2  # the sinusoid example; your own Flax model and task sampler
    exec(compile(examples[index], f"README.md example {index + 1}", "exec"), {})
    out = capsys.readouterr().out
    assert "meta-loss" in out and "±" in out  # the Estimate prints as mean ± ci95
