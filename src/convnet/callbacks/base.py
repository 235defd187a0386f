"""What every picture callback shares: when to draw, where to log, and leaving training as is."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter

from convnet.callbacks.layers import Stage, network_of, stages
from convnet.callbacks.samples import Samples, image_file_samples, validation_samples
from convnet.callbacks.state import left_as_found
from convnet.checks import positive_int

log = logging.getLogger(__name__)

Pictures = dict[str, Tensor]  # TensorBoard tag -> (3, H, W) picture in [0, 1]


class PictureContext:
    """The network and data a picture is drawn from, in training or from a checkpoint.

    image: an image file that replaces the fixed validation images (scripts/visualize.py).
    """

    def __init__(
        self,
        network: nn.Module,
        datamodule: Any,
        device: torch.device | str,
        image: Path | None = None,
    ) -> None:
        self.network = network
        self.datamodule = datamodule
        self.device = torch.device(device)
        self.image = image
        self._samples: dict[tuple[int, int], Samples] = {}
        self._stages: list[Stage] | None = None

    def samples(self, per_class: int, seed: int) -> Samples:
        """Return the fixed validation images (`per_class` of each class, chosen by `seed`),
        or the image file when one was given."""
        key = (per_class, seed) if self.image is None else (0, 0)
        if key not in self._samples:
            self._samples[key] = (
                validation_samples(self.datamodule, per_class, seed, self.device)
                if self.image is None
                else image_file_samples(self.image, self.datamodule, self.device)
            )
        return self._samples[key]

    def stages(self) -> list[Stage]:
        """Return the network's stages (see convnet.callbacks.layers.stages)."""
        if self._stages is None:
            # Only networks that declare no stages are traced, on the meta device.
            shape = (1, self.datamodule.in_channels, *self.datamodule.image_size)
            self._stages = stages(self.network, torch.empty(shape, device="meta"))
        return self._stages


def tensorboard_writers(trainer: L.Trainer) -> list[SummaryWriter]:
    """Return the SummaryWriter of each TensorBoardLogger the trainer logs to."""
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


class PictureCallback(Callback):
    """Log `pictures(context)` to TensorBoard at the start of training and every N epochs.

    Subclasses say what to draw; this class decides when (at step 0 unless at_start is
    false, after every `every_n_epochs`-th epoch and after the last), logs on global rank
    zero only, and runs the drawing inside `left_as_found`, so a picture never changes the
    training. Pictures are logged at the trainer's global step, like the scalars.

    network_attribute: the LightningModule attribute holding the network (`model`); the
        LightningModule itself is used when it has none.
    """

    name = "pictures"  # the config key, for error messages

    def __init__(
        self, every_n_epochs: int = 1, at_start: bool = True, network_attribute: str = "model"
    ) -> None:
        self.every_n_epochs = positive_int(every_n_epochs, f"callbacks.{self.name}.every_n_epochs")
        self.at_start = at_start
        self.network_attribute = network_attribute
        self.seconds = 0.0  # time spent drawing and logging, for benchmarks
        self._context: PictureContext | None = None

    def pictures(self, context: PictureContext) -> Pictures:
        """Return the pictures to log, by tag."""
        raise NotImplementedError

    def due(self, trainer: L.Trainer) -> bool:
        """Return whether the epoch that just ended is one to draw after."""
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        return epoch % self.every_n_epochs == 0 or last or trainer.should_stop

    def context(self, trainer: L.Trainer, pl_module: L.LightningModule) -> PictureContext:
        """Return the drawing context of this fit (its fixed images are computed once)."""
        network = network_of(pl_module, self.network_attribute)
        if self._context is None or self._context.network is not network:
            self._context = PictureContext(network, trainer.datamodule, pl_module.device)
        return self._context

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Draw and log to every TensorBoard logger, on global rank zero only."""
        writers = tensorboard_writers(trainer)
        if not trainer.is_global_zero or not writers:
            return
        start = time.perf_counter()
        context = self.context(trainer, pl_module)
        network = context.network
        if trainer.world_size > 1:
            # DDP's gradient hooks sit on the shared parameters: a backward pass on rank
            # zero alone would wait for the other ranks. Draw with a copy that has none.
            context.network = copy.deepcopy(network)
        try:
            with left_as_found(context.network):
                self.write(writers, context, trainer.global_step)
        finally:
            context.network = network
        self.seconds += time.perf_counter() - start

    def write(self, writers: list[SummaryWriter], context: PictureContext, step: int) -> None:
        """Log this callback's pictures at `step` (other summaries override this)."""
        pictures = self.pictures(context)
        for writer in writers:
            for tag, image in pictures.items():
                writer.add_image(tag, image, global_step=step)
        log.debug("%s: %d pictures at step %d", type(self).__name__, len(pictures), step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed run already has pictures at its first step.
        if self.at_start and trainer.global_step == 0:
            self.draw(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.due(trainer):
            self.draw(trainer, pl_module)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._context = None
