from pathlib import Path

from jmeta.train.scoring import find_run


def test_find_run_accepts_a_run_its_checkpoints_or_one_checkpoint():
    run = Path("runs/x")
    assert find_run(run) == (run, None)
    assert find_run(run / "checkpoints") == (run, None)
    assert find_run(run / "checkpoints" / "300") == (run, 300)
