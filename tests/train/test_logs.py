import sys
import types

from jmeta.train.logs import MetricsLog, plot_curves, read_metrics, write_json


def test_resume_drops_what_the_killed_run_logged_after_its_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in (5, 10, 15):
        log.write({"split": "train", "step": step, "loss": 1.0 / step})
    log.write({"split": "val", "step": 10, "loss": 0.5})
    log.write({"split": "test", "step": 10, "loss": 0.4})
    log.close()
    with path.open("a") as f:
        f.write('{"split": "train", "st')  # a write torn by the kill
    assert [r["step"] for r in read_metrics(path)] == [5, 10, 15, 10, 10]
    MetricsLog(path, resume_step=10).close()
    assert read_metrics(path) == [
        {"split": "train", "step": 5, "loss": 0.2},
        {"split": "train", "step": 10, "loss": 0.1},
        {"split": "val", "step": 10, "loss": 0.5},
    ]


def test_tensorboard_when_tensorboardx_is_importable(tmp_path, monkeypatch):
    scalars = []

    class SummaryWriter:
        def __init__(self, logdir):
            self.logdir = logdir

        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setitem(
        sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=SummaryWriter)
    )
    log = MetricsLog(tmp_path / "metrics.jsonl", tensorboard_dir=tmp_path / "tb")
    log.write({"split": "val", "step": 3, "accuracy": 0.5, "inner_steps": 1})
    log.close()
    assert ("val/accuracy", 0.5, 3) in scalars


def test_plot_and_json_are_written_atomically(tmp_path):
    records = [
        {"split": "train", "step": s, "loss": 2.0 / s, "accuracy": 0.1 * s} for s in (1, 2, 3)
    ] + [
        {
            "split": "val",
            "step": 3,
            "loss": 0.7,
            "loss_ci95": 0.1,
            "accuracy": 0.3,
            "accuracy_ci95": 0.05,
        }
    ]
    plot_curves(records, tmp_path / "curves.png", title="t")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    write_json(tmp_path / "r.json", {"x": float("nan")})
    assert (tmp_path / "r.json").read_text().strip() == '{\n  "x": "nan"\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "r.json"]


def test_plotting_the_curves_leaves_matplotlib_s_backend_alone(tmp_path, monkeypatch):
    """A notebook's inline plots still show after a run (plot_curves used to switch to Agg)."""
    import matplotlib

    def switch(*args, **kwargs):
        raise AssertionError(f"plot_curves switched matplotlib's backend: {args}")

    monkeypatch.setattr(matplotlib, "use", switch)
    monkeypatch.setattr("matplotlib.pyplot.switch_backend", switch)
    records = [
        {"split": "train", "step": 5, "loss": 1.0, "accuracy": 0.5},
        {"split": "val", "step": 5, "loss": 0.9, "loss_ci95": 0.1, "accuracy": 0.6},
    ]
    plot_curves(records, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
