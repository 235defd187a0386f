"""What every picture callback shares: what a picture is, where it is logged, when to
draw, and leaving training as is.

A picture is a `Picture`: its tag (convnet.callbacks.tags: `stage3/filters`), its image,
a description that says what its axes, colours and scale mean, and a short display name.
Every picture leaves the process through `send_pictures` (`log_pictures` from a
trainer), to every logger that takes pictures: TensorBoard gets the image with the
description and display name in the tag's summary metadata, which its Images card shows and
its HTTP API returns; MLflow gets the same PNG as an artifact, `pictures/<tag>/step_<step>.png`,
with its description beside it as a `.txt` file (the CSV logger takes none). scripts/visualize.py
writes the same pictures as PNG files, each with its description beside it.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.compat.proto.types_pb2 import DT_STRING
from tensorboard.plugins.image.metadata import create_summary_metadata
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import image as image_summary

from convnet.callbacks.layers import Stage, network_of, picture_stage, stages
from convnet.callbacks.samples import Samples, image_file_samples, validation_samples
from convnet.callbacks.state import left_as_found, run_precision
from convnet.checks import positive_int

log = logging.getLogger(__name__)

# The loggers that take pictures: TensorBoard's (image summaries) and MLflow's (artifacts).
PICTURE_LOGGERS: tuple[type[Logger], ...] = (TensorBoardLogger, MLFlowLogger)
PICTURES = "pictures"  # MLflow's artifact folder of the pictures


@dataclass(frozen=True)
class Picture:
    """One picture, as every dashboard and file gets it.

    tag: where it goes, `<stage>/<kind>[/<part>]` (see convnet.callbacks.tags).
    image: (3, H, W) float in [0, 1] on the CPU, sized for TensorBoard's display (see
        convnet.callbacks.render.MAX_SIZE).
    description: Markdown saying what the picture shows and what its axes, colours,
        numbers and scale mean, with the module path; TensorBoard shows it on the card.
    display_name: a short title (the tag when empty).
    """

    tag: str
    image: Tensor
    description: str
    display_name: str = ""


Pictures = list[Picture]


def encoded_png(picture: Picture) -> Summary.Image:
    """Return the picture's PNG as TensorBoard encodes it (width, height, encoded_image_string):
    every logger gets these same bytes."""
    image = image_summary(picture.tag, picture.image.detach().float().cpu(), dataformats="CHW")
    return image.value[0].image


def picture_summary(picture: Picture, png: Summary.Image | None = None) -> Summary:
    """Return the TensorBoard summary of a picture: a PNG under its tag (`png`, when encoded
    already), with its display name and description in the summary metadata.

    Written as tf.summary.image writes it (a string tensor of width, height and PNG with
    the image plugin's metadata): TensorBoard's data server drops the metadata of the
    older image values SummaryWriter.add_image writes.
    """
    png = png if png is not None else encoded_png(picture)
    tensor = TensorProto(
        dtype=DT_STRING,
        tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=3)]),
        string_val=[str(png.width).encode(), str(png.height).encode(), png.encoded_image_string],
    )
    metadata = create_summary_metadata(picture.display_name or picture.tag, picture.description)
    return Summary(value=[Summary.Value(tag=picture.tag, metadata=metadata, tensor=tensor)])


def write_pictures(
    writers: Sequence[SummaryWriter],
    pictures: Pictures,
    step: int,
    pngs: Sequence[Summary.Image] | None = None,
) -> None:
    """Write `pictures` at `step` to every TensorBoard writer (`pngs`: their encoded images)."""
    pngs = pngs if pngs is not None else [encoded_png(picture) for picture in pictures]
    summaries = [picture_summary(p, png) for p, png in zip(pictures, pngs, strict=True)]
    for writer in writers:
        file_writer = writer._get_file_writer()  # what SummaryWriter.add_image writes with
        for summary in summaries:
            file_writer.add_summary(summary, step)


def picture_artifact(tag: str, step: int) -> str:
    """Return where MLflow keeps a picture, under PICTURES: `stage1/filters/step_000128.png`."""
    return f"{tag}/step_{step:06d}.png"


def save_artifacts(
    logger: MLFlowLogger, pictures: Pictures, pngs: Sequence[Summary.Image], step: int
) -> None:
    """Upload `pictures` at `step` to the logger's MLflow run as PNG artifacts, each with its
    description beside it (`pictures/<tag>/step_<step>.png` and `.txt`), in one call."""
    with tempfile.TemporaryDirectory() as folder:
        for picture, png in zip(pictures, pngs, strict=True):
            path = Path(folder, picture_artifact(picture.tag, step))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png.encoded_image_string)
            path.with_suffix(".txt").write_text(picture.description + "\n")
        logger.experiment.log_artifacts(logger.run_id, folder, PICTURES)


def send_pictures(loggers: Sequence[Logger], pictures: Pictures, step: int) -> None:
    """Log `pictures` at `step` to every logger that takes pictures: the one place a picture
    is logged. Loggers of other kinds (CSV) are passed over."""
    if not pictures:
        return
    pngs = [encoded_png(picture) for picture in pictures]
    writers = [lg.experiment for lg in loggers if isinstance(lg, TensorBoardLogger)]
    write_pictures(writers, pictures, step, pngs)
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            save_artifacts(logger, pictures, pngs, step)


def picture_loggers(
    trainer: L.Trainer, kinds: tuple[type[Logger], ...] = PICTURE_LOGGERS
) -> list[Logger]:
    """Return the trainer's loggers of `kinds` (by default every one that takes pictures)."""
    return [lg for lg in trainer.loggers if isinstance(lg, kinds)]


def log_pictures(trainer: L.Trainer, pictures: Pictures, step: int) -> None:
    """Log `pictures` at `step` to every logger of the trainer that takes pictures (its
    TensorBoard and MLflow loggers), on global rank zero only."""
    if trainer.is_global_zero:
        send_pictures(picture_loggers(trainer), pictures, step)


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

    def stage_name(self, module: str) -> str:
        """Return the first part of the tags of module `module`'s pictures: its stage's
        name, `stem`, or the module's own name (see convnet.callbacks.layers.picture_stage)."""
        return picture_stage(self.network, self.stages(), module)


def tensorboard_writers(trainer: L.Trainer) -> list[SummaryWriter]:
    """Return the SummaryWriter of each TensorBoardLogger the trainer logs to (for what
    TensorBoard alone shows: histograms, the projector, HParams, custom scalars)."""
    return [lg.experiment for lg in picture_loggers(trainer, (TensorBoardLogger,))]


class PictureCallback(Callback):
    """Log `pictures(context)` to every logger that takes pictures (TensorBoard, MLflow) at
    the start of training and every N epochs.

    Subclasses say what to draw; this class decides when (at step 0 unless at_start is
    false, after every `every_n_epochs`-th epoch and after the last), logs on global rank
    zero only, and runs the drawing inside `left_as_found`, so a picture never changes the
    training. Pictures are logged at the trainer's global step, like the scalars.

    network_attribute: the LightningModule attribute holding the network (`model`); the
        LightningModule itself is used when it has none.
    """

    name = "pictures"  # the config key, for error messages
    logger_kinds = PICTURE_LOGGERS  # the loggers it writes to

    def __init__(
        self, every_n_epochs: int = 1, at_start: bool = True, network_attribute: str = "model"
    ) -> None:
        self.every_n_epochs = positive_int(every_n_epochs, f"callbacks.{self.name}.every_n_epochs")
        self.at_start = at_start
        self.network_attribute = network_attribute
        self.seconds = 0.0  # time spent drawing and logging, for benchmarks
        self._context: PictureContext | None = None

    def pictures(self, context: PictureContext) -> Pictures:
        """Return the pictures to log (also what scripts/visualize.py writes as PNG)."""
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
        """Draw and log to every logger of `logger_kinds`, on global rank zero only; with
        none, nothing is drawn."""
        loggers = picture_loggers(trainer, self.logger_kinds)
        if not trainer.is_global_zero or not loggers:
            return
        start = time.perf_counter()
        context = self.context(trainer, pl_module)
        network = context.network
        if trainer.world_size > 1:
            # DDP's gradient hooks sit on the shared parameters: a backward pass on rank
            # zero alone would wait for the other ranks. Draw with a copy that has none.
            context.network = copy.deepcopy(network)
        try:
            # In the run's precision (bf16 autocast where it trains so): the pictures show
            # the activations the network computes in training and validation, at the
            # speed it computes them (filter response's ascent takes 1.5x less on AMX).
            with left_as_found(context.network), run_precision(trainer):
                self.write(loggers, context, trainer.global_step)
        finally:
            context.network = network
        self.seconds += time.perf_counter() - start

    def write(self, loggers: list[Logger], context: PictureContext, step: int) -> None:
        """Log this callback's pictures at `step` (other summaries override this)."""
        pictures = self.pictures(context)
        send_pictures(loggers, pictures, step)
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
