"""A Lightning callback that stops one chosen run of a sweep as Ctrl+C would."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback


class InterruptRun(Callback):
    """Raises KeyboardInterrupt in run number `at` (0-based), counting the runs that started
    in the file `counter` across processes: when training starts, or with `epoch`, when
    that epoch (0-based) starts, the epochs before it trained and checkpointed."""

    def __init__(self, counter: str, at: int, epoch: int | None = None) -> None:
        self.counter = Path(counter)
        self.at = at
        self.epoch = epoch
        self._chosen = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        started = int(self.counter.read_text()) if self.counter.is_file() else 0
        self.counter.write_text(str(started + 1))
        self._chosen = started == self.at
        if self._chosen and self.epoch is None:
            raise KeyboardInterrupt

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._chosen and trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt
