"""A line per epoch: on the console of a batch job, in the run's log always, never twice."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import OmegaConf

from convnet.callbacks import epoch_log
from convnet.callbacks.epoch_log import EpochLog, TerminalProgressBar
from convnet.train import train
from tests.compose import REPO, compose_config
from tests.scripts import run_script

# 4 training batches of 32 images an epoch, one validation batch.
TINY = [
    "data.source.num_train=128",
    "data.source.num_val=64",
    "data.source.num_test=64",
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "callbacks=minimal",
    "logger=none",
]
EPOCH_LINE = re.compile(
    r"epoch (\d+)/(\d+): train/loss ([\d.]+), train/acc ([\d.]+), "
    r"val/loss ([\d.]+), val/acc ([\d.]+), ([\d.]+) s, (\d+) images/s$"
)


def _epoch_lines(text: str) -> list[re.Match[str]]:
    return [m for line in text.splitlines() if (m := EPOCH_LINE.search(line))]


@pytest.mark.slow
def test_a_batch_job_logs_a_line_per_epoch_on_the_console_and_in_its_log(tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [REPO / "scripts" / "train.py", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={run}"]
    # Both streams into one file, as `nohup ... > log 2>&1`.
    done = run_script(command, cwd=tmp_path, merge=True)
    console = done.stdout
    assert done.returncode == 0, console[-3000:]
    lines = _epoch_lines(console)
    assert [(m[1], m[2]) for m in lines] == [("1", "2"), ("2", "2")]  # no sanity-check line
    assert "it/s" not in console  # no progress bar drawn into the file

    metrics = json.loads((run / "result.json").read_text())["metrics"]
    last = lines[-1]
    for group, name in enumerate(["train/loss", "train/acc", "val/loss", "val/acc"], start=3):
        assert float(last[group]) == pytest.approx(metrics[name], abs=5e-5), name
    best = max(float(m[6]) for m in lines)
    assert best == pytest.approx(metrics["val/acc_best"], abs=5e-5)
    for m in lines:  # 128 training images an epoch, seconds rounded to 0.1
        seconds, rate = float(m[7]), int(m[8])
        assert rate * (seconds - 0.05) - 1 <= 128 <= rate * (seconds + 0.05) + 1

    log = (run / "train.log").read_text()
    assert [m[0] for m in _epoch_lines(log)] == [m[0] for m in lines]
    assert f"val/acc_best {metrics['val/acc_best']:.4f}" in log
    test = sorted(name for name in metrics if name.startswith("test/"))
    assert "test/acc" in test
    assert "test: " + ", ".join(f"{name} {metrics[name]:.4f}" for name in test) in log


class Terminal(io.StringIO):
    """A console that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger's handlers and level back as they were after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level


def _log_as_hydra_does(tmp_path: Path) -> Path:
    """Configure logging as Hydra's job logging does for a run in tmp_path/run (its console
    on sys.stdout as it is now); return the run's log file."""
    cfg = compose_config("train", TINY, tmp_path, output_dir=tmp_path / "run")
    logging.config.dictConfig(OmegaConf.to_container(cfg.hydra.job_logging, resolve=True))
    return tmp_path / "run" / "train.log"


def _one_epoch(bar: TerminalProgressBar, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run EpochLog through one epoch of 2 batches of 32 images taking 2 seconds."""
    callback = EpochLog()
    clock = iter([10.0, 10.0, 12.0])  # train start, epoch start, epoch end
    monkeypatch.setattr(epoch_log.time, "perf_counter", lambda: next(clock))
    trainer = SimpleNamespace(
        callback_metrics={
            "train/loss": torch.tensor(0.5),
            "train/acc": torch.tensor(0.75),
            "val/loss": torch.tensor(0.6),
            "val/acc": torch.tensor(0.7),
        },
        current_epoch=0,
        max_epochs=2,
        world_size=1,
        is_global_zero=True,
        sanity_checking=False,
        progress_bar_callback=bar,
    )
    bar.setup(trainer, None, "fit")
    callback.setup(trainer, None, "fit")
    callback.on_train_start(trainer, None)
    callback.on_train_epoch_start(trainer, None)
    batch = (torch.zeros(32, 3, 8, 8), torch.zeros(32))
    for index in range(2):
        callback.on_train_batch_end(trainer, None, None, batch, index)
    callback.on_validation_epoch_end(trainer, None)
    callback.on_train_epoch_end(trainer, None)
    callback.on_train_end(trainer, None)
    callback.teardown(trainer, None, "fit")


@pytest.mark.parametrize("terminal", [True, False])
@pytest.mark.usefixtures("restore_logging")
def test_on_a_terminal_the_progress_bar_shows_the_epoch_and_only_the_log_file_gets_its_line(
    terminal: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    console = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stdout", console)
    monkeypatch.setenv("TERM", "xterm-256color")
    log_file = _log_as_hydra_does(tmp_path)
    bar = TerminalProgressBar()
    _one_epoch(bar, monkeypatch)
    line = "epoch 1/2: train/loss 0.5000, train/acc 0.7500, val/loss 0.6000, val/acc 0.7000, "
    line += "2.0 s, 32 images/s"
    assert bar.is_enabled == terminal  # off where it cannot draw
    assert line in log_file.read_text()
    assert (line in console.getvalue()) != terminal


@pytest.mark.slow
def test_a_resumed_run_numbers_its_epochs_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def run(*overrides: str) -> list[str]:
        cfg = compose_config("train", [*TINY, "test=false", *overrides], tmp_path, tmp_path / "r")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=epoch_log.__name__):
            train(cfg)
        return [f"{m[1]}/{m[2]}" for m in _epoch_lines(caplog.text)]

    assert run("trainer.max_epochs=1") == ["1/1"]
    assert run("trainer.max_epochs=2", "ckpt_path=last") == ["2/2"]


@pytest.mark.usefixtures("restore_logging")
def test_the_default_runs_bar_redraws_a_few_times_a_second_not_lightnings_hundred(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdout", Terminal())
    monkeypatch.setenv("TERM", "xterm-256color")
    callbacks = OmegaConf.load(REPO / "configs" / "callbacks" / "default.yaml")
    bar = instantiate(callbacks.rich_progress_bar)
    trainer = SimpleNamespace(progress_bar_callback=bar, is_global_zero=True)
    bar.setup(trainer, None, "fit")
    bar._init_progress(trainer)  # starts the live display and its drawing thread
    try:
        assert bar.is_enabled
        assert 1 <= bar.progress.live.refresh_per_second <= 10
        assert RichProgressBar().refresh_rate == 100  # Lightning's own, 3 ms of Python each
    finally:
        bar._stop_progress()
