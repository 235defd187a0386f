"""Two-process DDP on the CPU (gloo) under Hydra: one run, rank-disjoint shards."""

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.compose import REPO, TINY_SHAPES
from tests.scripts import run_script

# The three ways to start training; Lightning starts rank 1 by running what started rank 0
# again (`python <script>` or `python -m <module>`), with rank 0's arguments.
ENTRY_POINTS = {
    "script": [REPO / "scripts" / "train.py"],
    "python -m convnet": ["-m", "convnet", "train"],
    # What the `convnet` console script runs: a __main__ with no module spec.
    "convnet command": [
        "-c",
        "import sys; from convnet.cli import main; sys.exit(main())",
        "train",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("entry", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_ddp_run_writes_one_run_directory_and_covers_the_data_once(
    tmp_path: Path, entry: list
) -> None:
    # Rank 0 is a fork of tests.scripts' forkserver; Lightning starts rank 1 as a subprocess
    # of it, as it does for a user (where `convnet train` once started `convnet <arguments>`
    # without the subcommand, and rank 1 failed).
    command = [
        *entry,
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
