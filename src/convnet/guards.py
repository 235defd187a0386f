"""Training guards: stop a diverged run before it can overwrite a good checkpoint, and
checkpoint an interrupted one before it exits."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


# A run has diverged when its loss exceeds this many times a uniform guess's.
LOSS_FACTOR = 20.0


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite, or blew up far beyond a guess's."""


class DivergenceGuard(Callback):
    """Stops training when the loss diverges, before the next checkpoint.

    Diverged means NaN or infinite, or above `loss_factor` times the loss of a uniform
    guess over the classes (ln of their number: 2.3 for 10): a run whose loss reaches
    46 on 10 classes has blown up even if the numbers are still finite (a learning rate
    too high often takes the loss to thousands without a NaN), and no batch of a run
    that is learning comes near it. `loss_factor=None` checks NaN and infinity only.

    The check accumulates on the device and reads it back every `check_every_n_steps`
    and before every validation, so it costs one host-device sync per N steps; the
    checkpoints are written after validation, so a diverged epoch never reaches them
    and `best` and `last.ckpt` stay those of the last good epoch.
    """

    def __init__(
        self, check_every_n_steps: int = 50, loss_factor: float | None = LOSS_FACTOR
    ) -> None:
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps={check_every_n_steps} must be >= 1")
        if loss_factor is not None and not loss_factor > 0:
            raise ValueError(f"loss_factor={loss_factor} must be positive (or None)")
        self.check_every_n_steps, self.loss_factor = check_every_n_steps, loss_factor
        self._max_loss = math.inf  # the loss above which a run has diverged
        self._steps: torch.Tensor | None = None  # steps seen since the last check
        self._first_bad: torch.Tensor | None = None  # first diverged one, or -1
        self._bad_loss: torch.Tensor | None = None  # its loss
        self._lrs: list[float] = []  # learning rate of each of those steps (host floats)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        num_classes = getattr(pl_module, "hparams", {}).get("num_classes")
        if self.loss_factor is not None and num_classes and num_classes >= 2:
            self._max_loss = self.loss_factor * math.log(num_classes)

    def _reset(self, device: torch.device) -> None:
        self._steps = torch.zeros((), dtype=torch.long, device=device)
        self._first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self._bad_loss = torch.zeros((), device=device)
        self._lrs = []

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._steps is None:
            self._reset(pl_module.device)
        # The rate this step uses; the scheduler has moved on by the batch's end.
        self._lrs.append(trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else 0.0)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or self._steps is None:
            return
        loss = loss.detach().float()
        # NaN > x is False, so NaN needs its own test.
        first = (~torch.isfinite(loss) | (loss > self._max_loss)) & (self._first_bad < 0)
        self._first_bad = torch.where(first, self._steps, self._first_bad)
        self._bad_loss = torch.where(first, loss, self._bad_loss)
        self._steps += 1
        if trainer.global_step % self.check_every_n_steps == 0:
            self._check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        if self._first_bad is None:
            return
        first_bad, steps, loss = int(self._first_bad), int(self._steps), float(self._bad_loss)
        if first_bad < 0:
            self._reset(self._first_bad.device)
            return
        step = trainer.global_step - steps + first_bad
        lr = self._lrs[first_bad] if first_bad < len(self._lrs) else float("nan")
        if math.isfinite(loss):
            what = (
                f"the loss blew up to {loss:.4g} (over {self.loss_factor:g} times the "
                f"{self._max_loss / self.loss_factor:.3g} of a uniform guess)"
            )
        else:
            what = "the loss became NaN or infinite"
        raise DivergenceError(
            f"training diverged: {what} at step {step} (epoch {trainer.current_epoch}) with "
            f"learning rate {lr:.4g}. The checkpoints of the last good epoch are kept. Try a "
            "lower optimizer.lr (e.g. half), a longer warm-up (scheduler.pct_start or "
            "scheduler=cosine), or check the data's mean/std."
        )


class CheckpointOnInterrupt(Callback):
    """Writes last.ckpt when training is stopped by SIGTERM (cluster pre-emption, `kill`)
    or SIGINT (Ctrl+C), so `ckpt_path=last` continues from the interrupted batch."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        log.warning(
            "training interrupted at step %d (%s): saved %s; continue with ckpt_path=last",
            trainer.global_step,
            type(exception).__name__,
            self.path,
        )
