"""A line per epoch in the run's log, and on the console wherever no progress bar draws.

Every epoch ends with one INFO line through the `convnet.callbacks.epoch_log` logger:

    epoch 2/8: train/loss 1.2345, train/acc 0.5678, val/loss 1.1234, val/acc 0.6012, 12.3 s,
    812 images/s  (on one line)

and training with `val/acc_best`, a test with its metrics. Hydra's job logging sends them to
the console and to the run's log file (<run>/train.log), so `tail -f` follows any run. On a
terminal the progress bar shows the same numbers, and the lines go to the log file alone (the
console's handlers drop them); in a batch job (nohup, SLURM, a CI log), where a bar cannot
draw, TerminalProgressBar turns itself off and the console gets the lines.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar
from rich.console import Console

log = logging.getLogger(__name__)

TRAIN_METRICS = ("train/loss", "train/acc")
VAL_METRICS = ("val/loss", "val/acc")
# The attribute of a log line meant for the run's log file alone, not for the console.
FILE_ONLY = "convnet_file_only"


def draws_live(console: Console | None = None) -> bool:
    """Return whether a progress bar can draw on the console (stdout unless given): a
    terminal (a TTY, TERM not dumb) or a Jupyter notebook; not a file, a pipe, a job's log."""
    console = console or Console()
    if console.is_jupyter:
        return True
    isatty = getattr(console.file, "isatty", None)
    dumb = os.environ.get("TERM", "").lower() in ("dumb", "unknown")
    return isatty is not None and isatty() and not dumb


class TerminalProgressBar(RichProgressBar):
    """Lightning's rich progress bar where it can draw (draws_live), off elsewhere: redirected
    to a file it would print only its last state, a line of escape codes and bar glyphs.
    Off, it still stands in the trainer's progress bar place (no default bar is added).

    refresh_rate: redraws a second, 5 where Lightning's bar draws up to 100. Its drawing
    thread takes ~3 ms of Python a redraw, away from the training loop's thread and a core:
    at 100 a second a small network's step at batch 32 on 2 CPU cores took 8.3 ms, at 5 a
    second 6.5 ms, with no bar 5.8 ms.
    """

    def __init__(self, refresh_rate: int = 5, **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if not draws_live(Console(**self._console_kwargs)):
            self.disable()


class FileOnlyLines(logging.Filter):
    """A console handler's filter: every line but those marked FILE_ONLY."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, FILE_ONLY, False)


def console_handlers() -> list[logging.Handler]:
    """Return the root logger's handlers that write to the console, stdout or stderr (Hydra's
    job logging's `console`, logging.basicConfig's), not to a file."""
    streams = [sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__]
    handlers = logging.getLogger().handlers
    return [h for h in handlers if any(getattr(h, "stream", None) is s for s in streams)]


@dataclass(frozen=True)
class _EpochEnd:
    """An epoch that ended: its number, its seconds, the images it trained on, and whether
    it was validated."""

    epoch: int
    seconds: float
    images: int
    validated: bool


class EpochLog(Callback):
    """Logs a line per training epoch (epoch n/max, train and val loss and accuracy, the
    epoch's seconds with validation, training images per second) and the final metrics.

    Images are counted from the batches of rank zero times the number of ranks (every DDP
    rank trains an equal shard); only rank zero logs. A run resumed mid-epoch counts from
    where it resumed. While it runs, the console's handlers (console_handlers) drop the lines
    it marks for the log file alone.
    """

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._images = 0
        self._validated = False
        self._ended: _EpochEnd | None = None  # its line waits for the epoch's train metrics
        self._file_only = FileOnlyLines()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for handler in console_handlers():
            handler.addFilter(self._file_only)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._file_only)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run resumed mid-epoch starts its epoch here (Lightning calls no epoch start).
        self._start_epoch()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_ended(trainer)
        self._start_epoch()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        self._images += len(images)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning calls this before the module logs the epoch's training metrics, so the
        # line is written when they are there: as the next epoch starts, or training ends.
        if self._images:  # not a resumed run's restart at the end of an epoch it had trained
            self._ended = _EpochEnd(
                epoch=trainer.current_epoch + 1,
                seconds=time.perf_counter() - self._started,
                images=self._images * trainer.world_size,
                validated=self._validated,
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_ended(trainer)
        best = trainer.callback_metrics.get("val/acc_best")
        if best is not None:
            self._log(trainer, f"val/acc_best {float(best):.4f}")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        test = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        if test:
            self._log(trainer, "test: " + ", ".join(_values(test, sorted(test))))

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # A run stopped after an epoch (SIGTERM, a checkpoint that failed) logs that epoch.
        self._write_ended(trainer)
        self.teardown(trainer, pl_module, "exception")  # Lightning calls no teardown then

    def _start_epoch(self) -> None:
        self._started, self._images, self._validated = time.perf_counter(), 0, False

    def _write_ended(self, trainer: L.Trainer) -> None:
        ended, self._ended = self._ended, None
        if ended is None:
            return
        metrics = trainer.callback_metrics
        names = [*TRAIN_METRICS, *(VAL_METRICS if ended.validated else ())]
        of = f"/{trainer.max_epochs}" if trainer.max_epochs not in (None, -1) else ""
        throughput = ended.images / ended.seconds if ended.seconds > 0 else float("nan")
        parts = [
            *_values(metrics, [name for name in names if name in metrics]),
            f"{ended.seconds:.1f} s",
            f"{throughput:.0f} images/s",
        ]
        self._log(trainer, f"epoch {ended.epoch}{of}: " + ", ".join(parts))

    def _log(self, trainer: L.Trainer, line: str) -> None:
        if not trainer.is_global_zero:
            return
        # Where a progress bar draws on the terminal, it shows these numbers already.
        bar = trainer.progress_bar_callback
        file_only = bar is not None and bar.is_enabled and draws_live()
        log.info("%s", line, extra={FILE_ONLY: file_only})


def _values(metrics: dict[str, Any], names: list[str]) -> list[str]:
    return [f"{name} {float(metrics[name]):.4f}" for name in names]
