"""Result files are named by machine and date, each section of RESULTS.md has its file,
and the machine is described in one place (benchmarks/machine.py)."""

import datetime
import re

from benchmarks import machine, make_results


def test_every_results_section_has_its_file():
    for title, stem, _ in make_results.SECTIONS:
        if stem == make_results.ACCURACY:  # rendered from results/accuracy/*.json
            continue
        assert (make_results.RESULTS / f"{stem}.md").exists(), (title, stem)


def test_no_result_file_is_named_after_how_it_was_obtained():
    names = [p.name for p in make_results.RESULTS.iterdir()]
    assert not [n for n in names if "lease" in n]
    dated = re.compile(r"^(throughput|sinusoid_step|cpu_targets)_[a-z0-9-]+_\d{4}-\d{2}-\d{2}")
    timed = [n for n in names if n.startswith(("throughput", "sinusoid_step", "cpu_targets"))]
    assert timed and all(dated.match(n) for n in timed), timed


def test_gpu_records_name_their_run_by_date_and_number():
    runs = {r["run"] for r in make_results.gpu_records()}
    assert runs == {"2026-11-26 run 1", "2026-11-26 run 2", "2026-11-26 run 3"}


def test_result_stem_is_what_machine_and_date():
    today = datetime.date.today().isoformat()
    stem = machine.result_stem("throughput", "cpu")
    assert stem == f"throughput_{machine.slug(machine.cpu_name())}_{today}"
    assert machine.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_describe_states_machine_versions_date_and_load():
    line = machine.describe(("optax",))
    for needle in (machine.cpu_name(), "JAX", "Python", "optax", "load average",
                   datetime.date.today().isoformat()):  # fmt: skip
        assert needle in line, needle
