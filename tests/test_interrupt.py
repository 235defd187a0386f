"""A run stopped by SIGTERM saves last.ckpt, a run killed by SIGKILL keeps the one of its
last epoch, and either resumes to the very weights and TensorBoard steps of an
uninterrupted run."""

import csv
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.compose import REPO
from tests.scripts import Script, start_script, wait_for

pytestmark = pytest.mark.slow

RUN = [
    "data.source.num_train=2048",
    "data.source.num_val=256",
    "data.source.num_test=0",
    "data.batch_size=16",
    "trainer.max_epochs=2",
    "test=false",
    "callbacks=minimal",
    "callbacks.rich_progress_bar=null",
    "logger=[tensorboard,csv]",
    "+logger.csv.flush_logs_every_n_steps=1",  # every row on disk as it is logged
]
STEPS_PER_EPOCH = 2048 // 16


def _train(root: Path, *extra: str) -> Script:
    return start_script([REPO / "scripts" / "train.py", *RUN, *extra], cwd=root, merge=True)


def _run(root: Path) -> Path:
    (run,) = (root / "outputs" / "train" / "runs").iterdir()  # a resumed run keeps its folder
    return run


def _last(root: Path) -> Path:
    return _run(root) / "checkpoints" / "last.ckpt"


def _wait_for_first_checkpoint(root: Path, process: Script) -> None:
    runs = root / "outputs" / "train" / "runs"
    wait_for(lambda: any(runs.glob("*/checkpoints/last.ckpt")), process, every=0.2)


def _scalar_steps(root: Path) -> dict[str, list[int]]:
    """Return the steps of each scalar tag as TensorBoard itself reads the run's log."""
    events = EventAccumulator(str(_run(root) / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _csv_steps(root: Path) -> dict[str, list[int]]:
    """Return the steps at which each column of the run's metrics.csv has a value."""
    with (_run(root) / "csv" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    columns = {key for row in rows for key in row if key != "step"}
    return {key: [int(row["step"]) for row in rows if row.get(key)] for key in columns}


def _assert_resumed_like(root: Path, reference: Path) -> None:
    a = torch.load(_last(reference), weights_only=True)
    b = torch.load(_last(root), weights_only=True)
    assert a["global_step"] == b["global_step"] == 2 * STEPS_PER_EPOCH
    for key, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][key], value), key
    steps = _scalar_steps(root)
    assert steps == _scalar_steps(reference)
    for tag, logged in steps.items():
        # Lightning adds `epoch` to both the training and the validation metrics of an
        # epoch, at the same step, in every run.
        if tag != "epoch":
            assert logged == sorted(set(logged)), tag
    # The CSV table too has each step once, those of the uninterrupted run.
    assert _csv_steps(root) == _csv_steps(reference)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Path]]:
    """Start the uninterrupted reference run (once, beside the first test's run); return a
    function that waits for it and returns its root folder."""
    root = tmp_path_factory.mktemp("uninterrupted")
    process = _train(root)

    def finished() -> Path:
        assert process.wait(timeout=600) == 0
        return root

    yield finished
    if process.poll() is None:
        process.kill()
        process.wait()


def test_sigterm_mid_epoch_saves_and_resume_gives_the_uninterrupted_weights(
    tmp_path: Path, uninterrupted: Callable[[], Path]
) -> None:
    process = _train(tmp_path)
    _wait_for_first_checkpoint(tmp_path, process)
    time.sleep(0.5)  # into epoch 1
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 143  # 128 + SIGTERM: the run did not finish
    assert "saved" in output and "ckpt_path=last" in output
    step = torch.load(_last(tmp_path), weights_only=True)["global_step"]
    assert STEPS_PER_EPOCH < step < 2 * STEPS_PER_EPOCH

    resumed = _train(tmp_path, "ckpt_path=last")
    assert resumed.wait(timeout=600) == 0
    _assert_resumed_like(tmp_path, uninterrupted())


def test_sigkill_mid_epoch_then_resume_logs_each_step_once_with_the_uninterrupted_weights(
    tmp_path: Path, uninterrupted: Callable[[], Path]
) -> None:
    process = _train(tmp_path)
    _wait_for_first_checkpoint(tmp_path, process)

    # Kill once the run has logged steps past its checkpoint: the resumed run logs them again.
    def logged_past_the_checkpoint() -> bool:
        return max(sum(_scalar_steps(tmp_path).values(), [0])) > STEPS_PER_EPOCH

    wait_for(logged_past_the_checkpoint, process, every=0.2)
    process.kill()
    process.wait(timeout=60)
    assert torch.load(_last(tmp_path), weights_only=True)["global_step"] == STEPS_PER_EPOCH

    resumed = _train(tmp_path, "ckpt_path=last")
    assert resumed.wait(timeout=600) == 0
    _assert_resumed_like(tmp_path, uninterrupted())
