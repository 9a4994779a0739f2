"""benchmarks/cpu_targets.py: what it measures, writes, and what RESULTS.md shows of it."""

from __future__ import annotations

import json

import pytest

from benchmarks import cpu_targets, make_results

# Benchmark harness code (optax.adam mixes Python floats with int32 counts).
pytestmark = pytest.mark.standard_promotion


def fake_case(reference_s: list[float], auto_s: list[float], target: str = "conv") -> dict:
    timing = {
        "wall_s": {"PyTorch": reference_s, "jmeta conv_impl=auto": auto_s},
        "cpu_s": {"PyTorch": reference_s, "jmeta conv_impl=auto": auto_s},
        "load_1min": [0.5, 0.6],
    }
    return {
        "target": target, "case": f"{target} case", "reference": "PyTorch", "setup_s": 1.0,
        "load_1min_before": 0.4, "summary": cpu_targets.summarize(timing, "PyTorch"),
        "first_loss": None, **timing,
    }  # fmt: skip


def test_speed_is_the_median_of_per_round_ratios():
    # Rounds where the machine was busy slow both contenders: the per-round ratio is 2 in
    # every round, although the medians of the times alone would give 3 / 1.5 = 2 too.
    summary = cpu_targets.summarize(
        {"wall_s": {"PyTorch": [2.0, 3.0, 8.0], "jmeta": [1.0, 1.5, 4.0]},
         "cpu_s": {"PyTorch": [1.0, 1.0, 1.0], "jmeta": [0.5, 0.5, 0.5]}},
        "PyTorch",
    )  # fmt: skip
    assert summary["jmeta"]["speed_vs_reference"] == pytest.approx(2.0)
    assert summary["jmeta"]["median_s"] == pytest.approx(1.5)
    assert summary["PyTorch"]["speed_vs_reference"] == pytest.approx(1.0)


def test_report_names_machine_date_versions_precision_and_load(tmp_path):
    report = {
        "cpu": "AMD EPYC 7B13", "cores": 2, "cores_used": 2, "date": "2026-12-01",
        "commit": "abc1234", "versions": {"python": "3.11.7", "jax": "0.10.2", "torch": "2.13.0"},
        "precision": "float32", "torch_threads": 2, "rounds": 3,
        "xla_flags": "--xla_cpu_use_thunk_runtime=false",
        "command": "python -m benchmarks.cpu_targets", "load_1min_start": 0.7,
        "load_1min_end": 0.9, "cases": [fake_case([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])],
    }  # fmt: skip
    path = cpu_targets.write_report(report, tmp_path, label="after")
    assert path.name == "cpu_targets_amd-epyc-7b13_2026-12-01_after.md"
    assert json.loads(path.with_suffix(".json").read_text())["cases"][0]["target"] == "conv"
    text = path.read_text()
    needles = ("AMD EPYC 7B13", "2026-12-01", "abc1234", "jax 0.10.2", "torch 2.13.0", "float32",
               "load average 0.7", "| jmeta conv_impl=auto | 1000.0 |", "2.00x",
               "XLA_FLAGS `--xla_cpu_use_thunk_runtime=false`")  # fmt: skip
    for needle in needles:
        assert needle in text, needle


def test_results_md_shows_the_newest_cpu_report(tmp_path, monkeypatch):
    met, unmet = fake_case([2.0], [1.0], "conv"), fake_case([1.0], [2.0], "maml")
    for date, cases in (("2026-11-30", [unmet]), ("2026-12-01", [met, unmet])):
        report = {
            "cpu": "Test CPU", "cores": 2, "cores_used": 2, "date": date, "commit": "c0ffee0",
            "versions": {"jax": "0.10.2"}, "precision": "float32", "torch_threads": 2,
            "rounds": 1, "command": "python -m benchmarks.cpu_targets", "load_1min_start": 0.3,
            "load_1min_end": 0.4, "cases": cases,
        }  # fmt: skip
        cpu_targets.write_report(report, tmp_path, label=None)
    monkeypatch.setattr(make_results, "RESULTS", tmp_path)
    monkeypatch.setattr(make_results, "HERE", tmp_path)
    make_results.main()
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## Targets on this CPU" in text
    assert "`cpu_targets_test-cpu_2026-12-01`: Test CPU, 2026-12-01" in text
    assert "| conv case | 2,000 | 1,000 | 2.00x | yes | - |" in text
    assert "| maml case | 1,000 | 2,000 | 0.50x | no | - |" in text


def test_quick_run_times_pytorch_and_jmeta_side_by_side(tmp_path):
    pytest.importorskip("torch")
    argv = ["--quick", "--targets", "conv", "--rounds", "1", "--impls", "auto",
            "--out", str(tmp_path), "--label", "test"]  # fmt: skip
    assert cpu_targets.main(argv) == 0
    (path,) = tmp_path.glob("cpu_targets_*_test.json")
    report = json.loads(path.read_text())
    assert report["precision"] == "float32" and report["versions"]["torch"]
    assert [c["target"] for c in report["cases"]] == ["conv", "conv"]
    for case in report["cases"]:
        assert set(case["summary"]) == {"PyTorch", "jmeta conv_impl=auto"}
        assert all(len(v) == 1 and v[0] > 0 for v in case["wall_s"].values())
