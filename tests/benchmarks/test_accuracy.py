"""benchmarks/accuracy.py: its recipes, their commands, and the section it renders."""

import json

import pytest

from benchmarks import accuracy, make_results
from benchmarks.reproduce_omniglot import command
from jmeta.train import TrainConfig

MACHINE = (
    "AMD EPYC 7B13, 2 logical CPUs; JAX 0.10.2 on 1 cpu device(s) (cpu); Linux 6.1, "
    "Python 3.11.7; 1-minute load average 3.2 when written"
)
#: A file as the first version of accuracy.py wrote it (trained in chunks, resumed).
OLD = {
    "name": "protonet-5", "algorithm": "protonet", "ways": 5, "accuracy": 0.9123,
    "ci95": 0.0061, "test_tasks": 600, "best_step": 3500, "steps": 6000,
    "stopped": "early stop",
    "commands": [
        "jmeta train --algo protonet --dataset omniglot --data-dir /data/omniglot --queries 5 "
        "--meta-batch-size 8 --num-steps 2000 --output-dir runs/p5 --keep-best --early-stop 5",
        "jmeta train --algo protonet --dataset omniglot --data-dir /data/omniglot --queries 5 "
        "--meta-batch-size 8 --num-steps 4000 --output-dir runs/p5 --keep-best --early-stop 5 "
        "--resume",
    ],
    "wall_seconds": 2712.0, "machine": MACHINE,
    "load_average": {"before": [1.5, 1.2, 1.0], "after": [4.25, 3.0, 2.0]}, "quick": False,
}  # fmt: skip
#: A file as this version writes it: trained 60-way, tested 20-way, stopped by the budget.
NEW = {
    **OLD, "name": "protonet-20", "ways": 20, "train_ways": 60, "accuracy": 0.801,
    "ci95": 0.0042, "best_step": 12000, "steps": 12340, "max_steps": 40000,
    "tasks_per_step": 1, "stopped": "budget", "date": "2026-12-01",
    "commands": ["jmeta train --algo protonet --dataset omniglot --data-dir ../d --ways 60 "
                 "--test-ways 20 --queries 5 --meta-batch-size 1 --time-limit 3600.0"],
}  # fmt: skip


def write(folder, *rows):
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        (folder / f"{row['name']}.json").write_text(json.dumps(row))
    return folder


def test_each_row_says_what_ran_and_the_papers_number(tmp_path):
    text = accuracy.render(write(tmp_path / "results", OLD, NEW))
    rows = [line for line in text.splitlines() if line.startswith("| protonet")]
    assert rows == [
        "| protonet-20 | protonet | 20 (60) | 80.1% ± 0.4 (600 tasks) | 96.0% (Snell et al. "
        "2017, trained 60-way) | 12,000 | 12,340 × 1 | budget | 45 min | AMD EPYC 7B13, 2 "
        "logical CPUs (1.5 → 4.2) |",
        "| protonet-5 | protonet | 5 (5) | 91.2% ± 0.6 (600 tasks) | 98.8% (Snell et al. 2017, "
        "trained 60-way) | 3,500 | 6,000 × 8 | early stop | 45 min | AMD EPYC 7B13, 2 logical "
        "CPUs (1.5 → 4.2) |",
    ]
    assert "161 characters" in text and "1,200 training characters" in text
    for row in (OLD, NEW):  # the exact commands and the full machine line, per row
        assert all(f"  `{c}`" in text for c in row["commands"])
    assert f"- protonet-20, 2026-12-01: {MACHINE}." in text
    assert f"- protonet-5: {MACHINE}." in text


def test_a_row_without_a_paper_number_and_a_quick_row_say_so(tmp_path):
    row = {**NEW, "name": "baseline-5", "algorithm": "baseline", "ways": 5, "quick": True}
    text = accuracy.render(write(tmp_path / "results", row))
    assert "| baseline-5 (quick smoke run) | baseline | 5 (60) |" in text
    assert "| not reported |" in text


def test_no_result_files_say_none_recorded(tmp_path):
    (tmp_path / "results").mkdir()
    assert "No run has been recorded yet" in accuracy.render(tmp_path / "results")


def test_results_md_has_the_converged_table_then_the_300_step_one(tmp_path, monkeypatch):
    write(tmp_path / "accuracy", NEW)
    (tmp_path / "omniglot_accuracy.md").write_text("# Few-shot\n\n| MAML | 5 | 69.2% |\n")
    monkeypatch.setattr(make_results, "RESULTS", tmp_path)
    monkeypatch.setattr(make_results, "HERE", tmp_path)
    make_results.main()
    text = (tmp_path / "RESULTS.md").read_text()
    converged = text.index("## Accuracy at convergence on minimal Omniglot")
    small = text.index("## Accuracy on minimal Omniglot after 300 meta-steps (a small-budget")
    assert converged < text.index("| protonet-20 | protonet | 20 (60) | 80.1%") < small
    assert small < text.index("| MAML | 5 | 69.2% |")


@pytest.mark.parametrize("name", sorted(accuracy.RECIPES))
def test_each_recipes_command_makes_its_config(name):
    fields, most = accuracy.RECIPES[name]
    config = TrainConfig(**{**accuracy.COMMON, **fields}, num_steps=most, time_limit=60.0,
                         output_dir=f"runs/{name}")  # fmt: skip
    assert accuracy.settings(command(config)) == config


def test_protonet_recipes_train_60_way_and_test_5_and_20_way():
    for name, ways in (("protonet-5", 5), ("protonet-20", 20)):
        fields, _ = accuracy.RECIPES[name]
        config = TrainConfig(**{**accuracy.COMMON, **fields})
        assert (config.ways, config.test_ways, config.queries) == (60, ways, 5)


def test_stability_summary_spreads_and_drops():
    from benchmarks.mamlpp_stability import markdown, summarise

    curves = {0: {25: 0.4, 50: 0.6, 75: 0.5}, 1: {25: 0.2, 50: 0.4, 75: 0.6}}
    summary = summarise(curves)
    assert summary["per_step"][1] == pytest.approx(
        {"step": 50, "mean": 0.5, "std": 0.1, "min": 0.4, "max": 0.6}
    )
    assert summary["largest_drop"] == pytest.approx(0.1)  # seed 0, from step 50 to 75
    report = {"learners": {"maml": {**summary, "test": [0.5, 0.6], "seconds": [60, 120]}},
              "steps": 75, "tasks": 4, "seeds": [0, 1], "val_tasks": 100, "eval_interval": 25,
              "test_tasks": 200, "machine": "a CPU", "date": "2026-12-01", "load_before": 3.0,
              "load_after": 4.0, "command": "python benchmarks/mamlpp_stability.py"}  # fmt: skip
    text = markdown(report)
    assert "A small-budget CPU comparison, not convergence" in text
    assert "| 50 | 50.0% ± 10.0 [40.0, 60.0] |" in text
    assert "| maml | 10.0 points | 50.0%, 60.0% (200 `minimal-test` tasks each) | 2 min |" in text
