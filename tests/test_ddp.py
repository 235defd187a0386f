"""Two-process DDP on the CPU (gloo) under Hydra: one run, rank-disjoint shards."""

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.compose import REPO, TINY_SHAPES
from tests.scripts import run_script


@pytest.mark.slow
def test_ddp_run_writes_one_run_directory_and_covers_the_data_once(tmp_path: Path) -> None:
    # Rank 0 is a fork of tests.scripts' forkserver; Lightning starts rank 1 as a subprocess
    # of it, `python scripts/train.py <the same arguments>`, as it does for a user.
    command = [
        REPO / "scripts" / "train.py",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        "test=false",
        "callbacks.rich_progress_bar=null",
        *TINY_SHAPES,
    ]
    result = run_script(command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 1
    (run,) = runs
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == "last.ckpt"
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    # 640 training images, 320 per rank in 5 batches of 64: the sum over ranks is the set.
    samples = events.Scalars("train/samples")
    assert [s.value for s in samples] == [640.0, 640.0]
    assert [s.step for s in samples] == [4, 9]  # 5 optimizer steps per epoch, not 10
