"""Training guards: stop a diverged run before it can overwrite a good checkpoint, and
checkpoint an interrupted one before it exits."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from itertools import chain
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from convnet.errors import DivergenceError
from convnet.sweeps.check import is_optuna_sweeper

log = logging.getLogger(__name__)


# A run has diverged when its loss exceeds this many times a uniform guess's.
LOSS_FACTOR = 20.0


def first_non_finite(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """Return the name of the first floating-point tensor holding a NaN or infinity, or None.

    One fused L2-norm reduction per device and dtype (the kernel clip_grad_norm_ uses; NaN
    and infinity survive it) and one host-device sync, however many tensors there are. A
    norm can also overflow to infinity from finite values (above ~1e19 in float32, summed in
    float32 for 16-bit tensors), so a flagged tensor is confirmed element by element before
    it is named.
    """
    named = [(name, t.detach()) for name, t in named_tensors if t.is_floating_point()]
    if not named:
        return None
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for index, (_, tensor) in enumerate(named):
        groups.setdefault((tensor.device, tensor.dtype), []).append(index)
    device, order, finite = named[0][1].device, [], []
    for (_, dtype), indices in groups.items():
        wider = torch.float32 if dtype.itemsize < 4 else None
        norms = torch._foreach_norm([named[i][1] for i in indices], 2, dtype=wider)
        finite.append(torch.isfinite(torch.stack(norms)).to(device))
        order += indices
    flagged = ~torch.cat(finite)
    if not flagged.any():  # the one sync when every tensor is finite
        return None
    suspects = sorted(order[i] for i in flagged.nonzero().flatten().tolist())
    return next((named[i][0] for i in suspects if not torch.isfinite(named[i][1]).all()), None)


class DivergenceGuard(Callback):
    """Stops training when the loss diverges, before the next checkpoint.

    Diverged means NaN or infinite, or above `loss_factor` times the loss of a uniform
    guess over the classes (ln of their number: 2.3 for 10): a run whose loss reaches
    46 on 10 classes has blown up even if the numbers are still finite (a learning rate
    too high often takes the loss to thousands without a NaN), and no batch of a run
    that is learning comes near it. `loss_factor=None` checks NaN and infinity only.

    A step only keeps its loss (no kernel, no host-device sync); the losses are checked
    together every `check_every_n_steps` and before every validation, one sync per N
    steps; the checkpoints are written after validation, so a diverged epoch never
    reaches them and `best` and `last.ckpt` stay those of the last good epoch.

    A NaN or infinity in any parameter or buffer (a BatchNorm's running_var often reaches
    infinity while the loss, computed from batch statistics, stays finite) is divergence
    too, whatever `loss_factor`: the weights are checked before validation, at each
    epoch's end and before every checkpoint is written, one sync each (and none again
    until a training batch has changed them).
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
        self._losses: list[torch.Tensor] = []  # of the steps since the last check
        self._lrs: list[float] = []  # learning rate of each of those steps (host floats)
        self._weights_checked = False  # the weights passed a check since the last batch

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        num_classes = getattr(pl_module, "hparams", {}).get("num_classes")
        if self.loss_factor is not None and num_classes and num_classes >= 2:
            self._max_loss = self.loss_factor * math.log(num_classes)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._weights_checked = False
        # The rate this step uses; the scheduler has moved on by the batch's end.
        self._lrs.append(_current_lr(trainer))

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        self._losses.append(loss.detach())
        if trainer.global_step % self.check_every_n_steps == 0:
            self._check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer)
            # Only while fitting: trainer.validate() on a broken checkpoint reports, not stops.
            if trainer.state.fn == TrainerFn.FITTING:
                self._check_weights(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)
        self._check_weights(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Called while the checkpoint is assembled, before it is written: raising here
        # leaves the file on disk as it was (step-interval and interrupt saves included).
        if trainer.state.fn == TrainerFn.FITTING:
            self._check(trainer)
            self._check_weights(trainer, pl_module)

    def _check_weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._weights_checked:
            return
        tensors = chain(pl_module.named_parameters(), pl_module.named_buffers())
        name = first_non_finite(tensors)
        if name is None:
            self._weights_checked = True
            return
        lr = self._lrs[-1] if self._lrs else _current_lr(trainer)
        raise DivergenceError(
            f"training diverged: {name} holds NaN or infinite values by step "
            f"{trainer.global_step} (epoch {trainer.current_epoch}) with learning rate "
            f"{lr:.4g}. The checkpoints of the last good epoch are kept. {_ADVICE}"
        )

    def _check(self, trainer: L.Trainer) -> None:
        if not self._losses:
            return
        losses = torch.stack(self._losses).float()
        # NaN > x is False, so NaN needs its own test.
        diverged = ~torch.isfinite(losses) | (losses > self._max_loss)
        if not diverged.any():  # the one sync
            self._losses, self._lrs = [], []
            return
        first_bad, steps = int(diverged.nonzero()[0]), len(losses)
        loss = float(losses[first_bad])
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
            f"learning rate {lr:.4g}. The checkpoints of the last good epoch are kept. {_ADVICE}"
        )


_ADVICE = (
    "Try a lower optimizer.lr (e.g. half), a longer warm-up (scheduler.pct_start or "
    "scheduler=cosine), or check the data's mean/std."
)


def _current_lr(trainer: L.Trainer) -> float:
    # The first group's rate: what the messages report, as the learning-rate monitor does.
    optimizers = getattr(trainer, "optimizers", None)
    return optimizers[0].param_groups[0]["lr"] if optimizers else 0.0


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
        epochs = trainer.fit_loop.epoch_progress
        if epochs.current.ready == epochs.current.started + 1:
            # Stopped in the hooks that begin an epoch, before its first batch: saved as the
            # end of the epoch before, which it is. Lightning (2.6) resumes the half-begun
            # state with the earlier epoch's batch count, and skips the epoch untrained.
            epochs.current.ready -= 1
            epochs.total.ready -= 1
        trainer.save_checkpoint(self.path, weights_only=False)
        log.warning(
            "training interrupted at step %d (%s): saved %s; %s",
            trainer.global_step,
            type(exception).__name__,
            self.path,
            how_to_continue(),
        )


def how_to_continue() -> str:
    """Return how to continue an interrupted run: the run with ckpt_path=last; a sweep's job
    with its sweep's command, continued in its folder (whose finished jobs are kept)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return "continue with ckpt_path=last"
    if is_optuna_sweeper(HydraConfig.get().sweeper.get("_target_")):
        return (
            "continue the study with the same command: it goes on from its storage, with new trials"
        )
    return (
        "continue the sweep with the same command and hydra.sweep.dir="
        f"{HydraConfig.get().sweep.dir} ckpt_path=last (its finished jobs are kept, this "
        "one resumes, those not started start)"
    )
