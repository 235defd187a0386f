"""The LightningModule: any classifier network, its loss, metrics and optimizer."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from convnet import keys
from convnet.checks import fraction
from convnet.hardware import describe, memory_format_for

OptimizerFactory = Callable[..., Optimizer]
SchedulerFactory = Callable[..., LRScheduler]

# Checkpoint key holding the resolved run config, so a checkpoint alone rebuilds its model.
CONFIG_KEY = "convnet_config"
# Checkpoint key holding the data's class names in label order, so predictions are named.
CLASSES_KEY = "convnet_classes"
RNG_KEY = "convnet_rng_states"
# The best val/acc of the epochs a checkpoint has trained: a resumed run's best-so-far
# counts them too (Lightning does not save a metric's state).
BEST_KEY = "convnet_val_acc_best"

log = logging.getLogger(__name__)


class ImageClassifier(L.LightningModule):
    """Train and evaluate `model` (images -> logits) with cross-entropy.

    Args:
        model: any nn.Module mapping (N, C, H, W) images to (N, num_classes) logits.
        optimizer: builds the optimizer from parameter groups (a Hydra partial).
        scheduler: builds the LR schedule from (optimizer, total_steps), or None.
        num_classes: number of classes; top-5 accuracy is logged when above 5.
        label_smoothing: cross-entropy label smoothing, in [0, 1).
        test_time_flip: evaluate (validation, test) on the mean of the logits of each image
            and its mirror image, the usual test-time augmentation of CIFAR speed-runs.
        exclude_norm_and_bias_from_weight_decay: no weight decay on 1-D parameters
            (norm scales and shifts, biases), as is usual for CNNs.
        config: the resolved run config, stored in every checkpoint.
        memory_format: the layout of the network and its batches (torch.channels_last...);
            None chooses it for the training device (convnet.hardware.memory_format_for).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None,
        num_classes: int,
        label_smoothing: float = 0.0,
        test_time_flip: bool = False,
        exclude_norm_and_bias_from_weight_decay: bool = True,
        config: dict[str, Any] | None = None,
        memory_format: torch.memory_format | None = None,
    ) -> None:
        super().__init__()
        label_smoothing = fraction(label_smoothing, keys.LABEL_SMOOTHING)
        self.save_hyperparameters(
            ignore=["model", "optimizer", "scheduler", "config", "memory_format"]
        )
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.config = config
        self.memory_format = memory_format
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.train_sums = TrainingSums()
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc, self.test_acc = (
            MulticlassAccuracy(num_classes, average="micro") for _ in range(2)
        )
        top5 = num_classes > 5
        self.val_acc_top5 = (
            MulticlassAccuracy(num_classes, top_k=5, average="micro") if top5 else None
        )
        self.test_acc_top5 = (
            MulticlassAccuracy(num_classes, top_k=5, average="micro") if top5 else None
        )
        self.val_acc_best = MaxMetric()
        self._best_before: float | None = None  # of the epochs before a resume
        self._best_seen: float | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` twice around each hook it calls on the module
        # (about 20 a training step). nn.Module's __setattr__ first checks whether the value
        # is a parameter, buffer or submodule, 2-3 us each time; a hook's name (a string or
        # None) never is, and goes where nn.Module would put it.
        if name == "_current_fx_name" and (value is None or isinstance(value, str)):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def on_fit_start(self) -> None:
        # A previous fit's or the sanity check's values must not count as "best"; the
        # epochs of the run this fit resumes do.
        self.val_acc_best.reset()
        self._best_seen = self._best_before
        if self._best_before is not None:
            self.val_acc_best.update(torch.tensor(self._best_before))

    def setup(self, stage: str) -> None:
        # cuDNN's and oneDNN's fastest convolutions want NHWC (convnet.hardware).
        device_type = self.trainer.strategy.root_device.type
        if self.memory_format is None:
            self.memory_format = memory_format_for("auto", device_type)
        self.model.to(memory_format=self.memory_format)
        log.info("%s", describe(str(self.trainer.precision), self.memory_format, device_type))

    def _layout(self, images: Tensor) -> Tensor:
        # A no-op for batches already in the network's layout (on CUDA they come NHWC).
        if self.memory_format is None:
            return images
        return images.contiguous(memory_format=self.memory_format)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self(self._layout(images))
        loss = self.criterion(logits, labels)
        self.train_sums.add(loss, logits, labels)
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_sums.reset()

    def on_train_epoch_end(self) -> None:
        # Summed over DDP ranks: the epoch's images (of every rank), mean loss and accuracy.
        reduce = self.trainer.strategy.reduce
        sums = self.train_sums
        loss, correct = (reduce(total, reduce_op="sum") for total in sums.totals(self.device))
        steps, images = reduce(sums.counts(self.device), reduce_op="sum").tolist()
        if steps == 0:  # a resumed run restarting at the end of an epoch it had trained
            return
        # Already summed over the ranks, where each holds the same values (sync_dist keeps
        # Lightning's epoch-level logging consistent across ranks).
        self.log("train/samples", float(images), sync_dist=True)
        self.log("train/loss", loss / steps, prog_bar=True, sync_dist=True)
        self.log("train/acc", correct.float() / images, prog_bar=True, sync_dist=True)

    def evaluation_logits(self, images: Tensor) -> Tensor:
        """Return the logits validation and test score: of the images, or with
        test_time_flip the mean of those of the images and their mirror images."""
        logits = self(images)
        if self.hparams.test_time_flip:
            logits = (logits + self(images.flip(3))) / 2
        return logits

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        images, labels = batch
        logits = self.evaluation_logits(self._layout(images))
        loss = self.criterion(logits, labels)
        loss_metric, acc_metric = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        loss_metric(loss)
        acc_metric(logits, labels)
        self.log(f"{stage}/loss", loss_metric, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", acc_metric, on_step=False, on_epoch=True, prog_bar=True)
        top5 = getattr(self, f"{stage}_acc_top5")
        if top5 is not None:
            top5(logits, labels)
            self.log(f"{stage}/acc_top5", top5, on_step=False, on_epoch=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        # Best-so-far only means something while fitting, not in a lone validate().
        if self.trainer.sanity_checking or self.trainer.state.fn != TrainerFn.FITTING:
            return
        self.val_acc_best(self.val_acc.compute())
        best = self.val_acc_best.compute()
        self._best_seen = float(best)
        self.log("val/acc_best", best, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _parameter_groups(self) -> list[dict[str, Any]]:
        if not self.hparams.exclude_norm_and_bias_from_weight_decay:
            return [{"params": list(_trainable(self.model)), "name": "all"}]
        decay, no_decay = [], []
        for parameter in _trainable(self.model):
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
        # Names become the LearningRateMonitor's tags (lr-SGD/weights ...).
        return [
            {"params": decay, "name": "weights"},
            {"params": no_decay, "weight_decay": 0.0, "name": "norm_and_bias"},
        ]

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Optimizer) -> None:
        # Freed, not zero-filled: no memset kernel, and the next backward writes fresh.
        optimizer.zero_grad(set_to_none=True)

    def build_optimizer(self) -> Optimizer:
        """Return the optimizer, fused (one kernel for all parameters) where torch has it.

        `optimizer.fused: null` (the default) means fused when torch has a fused kernel for
        the optimizer and device: on 2 CPU cores SGD's step on resnet20 takes 4 ms fused
        against 12 ms with foreach kernels. true or false force it.
        """
        factory, groups = self.optimizer_factory, self._parameter_groups()
        target = getattr(factory, "func", factory)
        chosen = getattr(factory, "keywords", {}).get("fused")
        if chosen is not None or "fused" not in inspect.signature(target).parameters:
            return factory(groups)
        try:
            return factory(groups, fused=True)
        except RuntimeError:  # no fused kernel for these parameters' device or dtype
            return factory(groups, fused=None)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.build_optimizer()
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.config is not None:
            checkpoint[CONFIG_KEY] = self.config
        classes = getattr(self.trainer.datamodule, "classes", None)
        if classes is not None:
            checkpoint[CLASSES_KEY] = [str(name) for name in classes]
        if self._best_seen is not None:
            checkpoint[BEST_KEY] = self._best_seen
        # The global RNG drives dropout and similar layers: a resumed run continues it.
        checkpoint[RNG_KEY] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint[RNG_KEY]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        best = checkpoint.get(BEST_KEY)
        # A number, or nothing: a checkpoint is data (an older one has no best).
        self._best_before = float(best) if isinstance(best, float | int) else None
        states = checkpoint.get(RNG_KEY)
        if states is None:
            return
        torch.set_rng_state(states["cpu"])
        if "cuda" in states and torch.cuda.device_count() == len(states["cuda"]):
            torch.cuda.set_rng_state_all(states["cuda"])


class TrainingSums:
    """The running sums of an epoch's training metrics: the loss and the correct predictions
    on the device, the steps and images on the host, all summed in order, so the epoch's
    mean loss and accuracy are those torchmetrics' MeanMetric and micro accuracy give.

    A step costs five small kernels and never waits for the device. The torchmetrics
    objects cost ~250 us of host time a step on the CPU (three updates, about twenty
    kernels): 2% of the default model's step at batch 32.
    """

    def __init__(self) -> None:
        self.loss: Tensor | None = None  # float32 sum of the steps' mean losses
        self.correct: Tensor | None = None  # predictions equal to the label
        self.steps = self.images = 0

    def reset(self) -> None:
        """Start an epoch: nothing summed."""
        self.loss = self.correct = None
        self.steps = self.images = 0

    def add(self, loss: Tensor, logits: Tensor, labels: Tensor) -> None:
        """Add one step's mean loss and its correct top-1 predictions (logits (N, classes))."""
        if self.loss is None or self.loss.device != loss.device:
            self.loss = torch.zeros((), device=loss.device)
            self.correct = torch.zeros((), dtype=torch.long, device=loss.device)
        self.loss.add_(loss.detach())
        self.correct.add_((logits.detach().argmax(dim=1) == labels).sum())
        self.steps += 1
        self.images += labels.shape[0]

    def totals(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Return the loss sum and the correct count (zeros on `device` before a step)."""
        if self.loss is None or self.correct is None:
            return torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device)
        return self.loss, self.correct

    def counts(self, device: torch.device) -> Tensor:
        """Return (steps, images) as a tensor on `device`."""
        return torch.tensor([self.steps, self.images], device=device)


def _trainable(model: nn.Module) -> Iterator[nn.Parameter]:
    return (parameter for parameter in model.parameters() if parameter.requires_grad)
