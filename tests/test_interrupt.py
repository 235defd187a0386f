"""A run stopped by SIGTERM saves last.ckpt and resumes to the very weights of an
uninterrupted run."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.compose import REPO

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
]
STEPS_PER_EPOCH = 2048 // 16


def _train(root: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "scripts" / "train.py"), *RUN, *extra]
    return subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _last(root: Path) -> Path:
    (run,) = (root / "outputs" / "train" / "runs").iterdir()
    return run / "checkpoints" / "last.ckpt"


def test_sigterm_mid_epoch_saves_and_resume_gives_the_uninterrupted_weights(
    tmp_path: Path,
) -> None:
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    straight.mkdir()
    interrupted.mkdir()
    reference = _train(straight)

    process = _train(interrupted)
    runs = interrupted / "outputs" / "train" / "runs"
    deadline = time.time() + 600
    while not list(runs.glob("*/checkpoints/last.ckpt")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # into epoch 1
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=600)[0].decode()
    assert process.returncode == 143  # 128 + SIGTERM: the run did not finish
    assert "saved" in output and "ckpt_path=last" in output
    step = torch.load(_last(interrupted), weights_only=True)["global_step"]
    assert STEPS_PER_EPOCH < step < 2 * STEPS_PER_EPOCH

    resumed = _train(interrupted, "ckpt_path=last")
    assert resumed.wait(timeout=600) == 0
    assert reference.wait(timeout=600) == 0
    a = torch.load(_last(straight), weights_only=True)
    b = torch.load(_last(interrupted), weights_only=True)
    assert a["global_step"] == b["global_step"] == 2 * STEPS_PER_EPOCH
    for key, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][key], value), key
