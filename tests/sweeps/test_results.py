"""What a run records in result.json, and how a failure ends a job in a sweep and alone."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from convnet.sweeps.results import FAILED, INTERRUPTED, OK, JobRecorder, read_result


def _raise(error: BaseException) -> Callable[[], dict[str, float]]:
    def train() -> dict[str, float]:
        raise error

    return train


def test_a_finished_run_records_its_metric_metrics_and_epochs(tmp_path: Path) -> None:
    recorder = JobRecorder(tmp_path, "val/acc_best", ["optimizer.lr=0.1"])

    def train() -> dict[str, float]:
        for epoch in range(3):  # as the Trainer calls the callback
            recorder.on_train_epoch_end(SimpleNamespace(current_epoch=epoch), None)
        return {"val/acc_best": 0.75, "train/loss": 0.5}

    assert recorder.run(train) == 0.75
    result = read_result(tmp_path)
    assert (result.status, result.value, result.epochs) == (OK, 0.75, 3)
    assert result.metrics == {"val/acc_best": 0.75, "train/loss": 0.5}
    assert result.overrides == ["optimizer.lr=0.1"]
    assert result.seconds >= 0


def test_in_a_sweep_a_raising_run_is_recorded_logged_and_returns_nan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = JobRecorder(tmp_path, "val/acc_best", in_sweep=True)
    with caplog.at_level(logging.ERROR):
        value = recorder.run(_raise(RuntimeError("CUDA out of memory.\nTried to allocate")))
    assert math.isnan(value)
    result = read_result(tmp_path)
    assert (result.status, result.error) == (FAILED, "RuntimeError: CUDA out of memory.")
    assert "Traceback" in caplog.text and "CUDA out of memory" in caplog.text


def test_a_single_run_that_raises_is_recorded_and_raises(tmp_path: Path) -> None:
    recorder = JobRecorder(tmp_path, "val/acc_best", in_sweep=False)
    with pytest.raises(ValueError, match="bad"):
        recorder.run(_raise(ValueError("bad")))
    assert read_result(tmp_path).status == FAILED


def test_a_missing_or_non_finite_metric_fails_the_run(tmp_path: Path) -> None:
    recorder = JobRecorder(tmp_path / "nan", "val/acc_best", in_sweep=True)
    assert math.isnan(recorder.run(lambda: {"val/acc_best": math.nan}))
    result = read_result(tmp_path / "nan")
    assert (result.status, result.error) == (FAILED, "val/acc_best is nan")
    # NaN is not JSON: it is stored as null and read back as NaN.
    assert json.loads((tmp_path / "nan" / "result.json").read_text())["metrics"] == {
        "val/acc_best": None
    }
    assert math.isnan(result.metrics["val/acc_best"])

    recorder = JobRecorder(tmp_path / "missing", "val/acc_best", in_sweep=True)
    assert math.isnan(recorder.run(lambda: {"val/acc": 0.5}))
    assert "was not logged" in read_result(tmp_path / "missing").error


def test_an_interrupted_run_is_recorded_and_the_interrupt_goes_on(tmp_path: Path) -> None:
    recorder = JobRecorder(tmp_path, "val/acc_best", in_sweep=True)
    with pytest.raises(KeyboardInterrupt):
        recorder.run(_raise(KeyboardInterrupt()))
    assert read_result(tmp_path).status == INTERRUPTED
