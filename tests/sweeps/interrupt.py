"""A Lightning callback that stops one chosen run of a sweep as Ctrl+C would."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback


class InterruptRun(Callback):
    """Raises KeyboardInterrupt when training starts in run number `at` (0-based), counting
    the runs that started in the file `counter` across processes."""

    def __init__(self, counter: str, at: int) -> None:
        self.counter = Path(counter)
        self.at = at

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        started = int(self.counter.read_text()) if self.counter.is_file() else 0
        self.counter.write_text(str(started + 1))
        if started == self.at:
            raise KeyboardInterrupt
