"""What the model gets wrong: confusion matrix, most confident mistakes, per-class accuracy."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from torchmetrics.classification import MulticlassConfusionMatrix

from convnet.callbacks.base import (
    Picture,
    PictureCallback,
    PictureContext,
    Pictures,
    log_pictures,
    picture_loggers,
)
from convnet.callbacks.confusion import confusion_description, confusion_matrix_picture
from convnet.callbacks.layers import network_of
from convnet.callbacks.render import MAX_SIZE, as_rgb, labelled_grid, resize, text_width
from convnet.callbacks.samples import pixels_of
from convnet.callbacks.state import few_threads
from convnet.callbacks.tags import range_part, split_pages
from convnet.checks import positive_int

ACCURACY_TAG = "val_class_acc"  # per-class accuracy scalars: val_class_acc/<class name>


class MistakeTracker:
    """Confusion counts and the `num_images` most confidently misclassified inputs of a
    pass over the validation data, kept on the device (counts sum over DDP ranks)."""

    def __init__(self, num_classes: int, num_images: int, device: torch.device) -> None:
        self.confusion = MulticlassConfusionMatrix(num_classes).to(device)
        self.num_images = num_images
        self.confidence = torch.empty(0, device=device)
        self.inputs: Tensor | None = None
        self.true = torch.empty(0, dtype=torch.long, device=device)
        self.predicted = torch.empty(0, dtype=torch.long, device=device)

    def update(self, logits: Tensor, labels: Tensor, inputs: Tensor) -> None:
        """Add one batch: `logits` (N, classes), `labels` (N,), normalised `inputs`."""
        logits = logits.detach().float()
        self.confusion.update(logits, labels)
        confidence, predicted = logits.softmax(dim=1).max(dim=1)
        # Right answers get -1, so they never displace a mistake; no host sync needed.
        confidence = torch.where(predicted != labels, confidence, -1.0)
        keep = confidence.topk(min(self.num_images, len(confidence))).indices
        merged = torch.cat([self.confidence, confidence[keep]])
        order = merged.topk(min(self.num_images, len(merged))).indices
        batch_inputs = inputs.detach()[keep]
        inputs_all = batch_inputs if self.inputs is None else torch.cat([self.inputs, batch_inputs])
        self.inputs = inputs_all[order]
        self.confidence = merged[order]
        self.true = torch.cat([self.true, labels[keep]])[order]
        self.predicted = torch.cat([self.predicted, predicted[keep]])[order]

    def counts(self) -> Tensor:
        """Return the confusion counts (row = true, column = predicted), synced over ranks."""
        return self.confusion.compute().long()

    def mistakes(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return the kept (inputs, true, predicted, confidence), mistakes only, most sure first."""
        wrong = (self.confidence >= 0).cpu()
        inputs = self.inputs.cpu()[wrong] if self.inputs is not None else torch.empty(0)
        return (
            inputs,
            self.true.cpu()[wrong],
            self.predicted.cpu()[wrong],
            self.confidence.cpu()[wrong],
        )


def per_class_accuracy(counts: Tensor) -> Tensor:
    """Return each class's accuracy (recall) from confusion `counts`; NaN for absent classes."""
    totals = counts.sum(dim=1).float()
    return torch.where(totals > 0, counts.diagonal().float() / totals, torch.nan)


def misclassified_pictures(
    pixels: Tensor,
    true: Tensor,
    predicted: Tensor,
    confidence: Tensor,
    classes: Sequence[str],
    tile_size: int = 72,
    rows: int = 2,
) -> list[tuple[str, Tensor]]:
    """Return (part, picture) pages of misclassified images, most confident first, each
    image over its true class and its predicted class with that class's probability;
    a page holds as many as fit MAX_SIZE whole, `rows` rows (no mistakes: one blank page)."""
    if len(pixels) == 0:
        blank = labelled_grid(torch.ones(1, 3, tile_size, tile_size), ["none"], columns=1)
        return [("1", blank)]
    tiles = as_rgb(resize(pixels.float(), tile_size))
    labels = [
        f"{classes[t]}\n{classes[p]} {c:.2f}"
        for t, p, c in zip(true.tolist(), predicted.tolist(), confidence.tolist(), strict=True)
    ]
    widest = max(tile_size, *(text_width(line) for label in labels for line in label.split("\n")))
    columns = max(1, min(4, MAX_SIZE[0] // (widest + 8)))
    found = []
    for chunk in split_pages(len(labels), columns * rows):
        start, end = chunk.start, chunk.stop
        grid = labelled_grid(tiles[start:end], labels[start:end], columns, 8, cell_width=widest)
        found.append((range_part(start, end - 1), grid))
    return found


MISCLASSIFIED = (
    "**The most confidently misclassified {source} images**, most confident first "
    "(images {part} of the {count} kept). Under each image: its true class, then the class "
    "the network predicted and that class's softmax probability."
)


class Mistakes(PictureCallback):
    """Confusion matrix (`mistakes/confusion_matrix`), the most confidently misclassified
    validation images (`mistakes/misclassified/1-6`, a page per tag) and per-class accuracy scalars
    (`val_class_acc/<class>`), after every N-th validation of a fit.

    The network's logits are taken from the validation pass itself with a forward hook,
    so nothing is computed twice. Counts are summed over DDP ranks; the misclassified
    images are rank zero's.
    """

    name = "mistakes"

    def __init__(
        self,
        num_images: int = 12,
        tile_size: int = 72,
        every_n_epochs: int = 1,
        network_attribute: str = "model",
    ) -> None:
        super().__init__(every_n_epochs, at_start=False, network_attribute=network_attribute)
        self.num_images = positive_int(num_images, "callbacks.mistakes.num_images")
        self.tile_size = positive_int(tile_size, "callbacks.mistakes.tile_size")
        self.accuracy: Tensor | None = None  # per class, from the last pictures drawn
        self._tracker: MistakeTracker | None = None
        self._hook: RemovableHandle | None = None
        self._logits: Tensor | None = None

    def pictures_of(
        self, tracker: MistakeTracker, counts: Tensor, datamodule: Any, source: str
    ) -> Pictures:
        """Return the confusion matrix and misclassified pictures of a finished pass."""
        classes = list(datamodule.classes)
        inputs, true, predicted, confidence = tracker.mistakes()
        pixels = pixels_of(inputs, datamodule)
        pictures = [
            Picture(
                "mistakes/confusion_matrix",
                confusion_matrix_picture(counts, classes),
                confusion_description(counts, classes, source),
                "confusion matrix (rows: true class; colour: share of the row)",
            )
        ]
        pages = misclassified_pictures(pixels, true, predicted, confidence, classes, self.tile_size)
        for part, image in pages:
            description = MISCLASSIFIED.format(source=source, part=part, count=len(true))
            pictures.append(
                Picture(
                    f"mistakes/misclassified/{part}",
                    image,
                    description,
                    f"misclassified {part} (true class; predicted, probability)",
                )
            )
        return pictures

    def pictures(self, context: PictureContext) -> Pictures:
        """Return the pictures of one pass over the whole validation split."""
        datamodule = context.datamodule
        tracker = MistakeTracker(len(datamodule.classes), self.num_images, context.device)
        with torch.no_grad():
            for images, labels in datamodule.val_dataloader():
                batch = (images.to(context.device), labels.to(context.device))
                inputs, labels = datamodule.on_after_batch_transfer(batch, 0)
                tracker.update(context.network(inputs), labels, inputs)
        counts = tracker.counts()
        self.accuracy = per_class_accuracy(counts)
        return self.pictures_of(tracker, counts, datamodule, "validation")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # drawn from validation passes only

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fitting = trainer.state.fn == TrainerFn.FITTING
        if trainer.sanity_checking or not fitting or not self.due(trainer):
            return
        network = network_of(pl_module, self.network_attribute)
        classes = len(trainer.datamodule.classes)
        self._tracker = MistakeTracker(classes, self.num_images, pl_module.device)
        self._hook = network.register_forward_hook(self._keep_logits)

    def _keep_logits(self, module: nn.Module, args: object, output: Tensor) -> None:
        self._logits = output

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._tracker is None or self._logits is None:
            return
        start = time.perf_counter()
        inputs, labels = batch
        with few_threads(inputs):
            self._tracker.update(self._logits, labels, inputs)
        self._logits = None
        self.seconds += time.perf_counter() - start

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._tracker is None:
            return
        start = time.perf_counter()
        self._hook.remove()
        tracker, self._tracker, self._hook = self._tracker, None, None
        counts = tracker.counts()  # every rank takes part in the sum over ranks
        self.accuracy = per_class_accuracy(counts)
        for name, accuracy in zip(trainer.datamodule.classes, self.accuracy.tolist(), strict=True):
            pl_module.log(f"{ACCURACY_TAG}/{name}", accuracy, on_epoch=True)
        if trainer.is_global_zero and picture_loggers(trainer):
            with few_threads(counts):
                pictures = self.pictures_of(tracker, counts, trainer.datamodule, "validation")
            log_pictures(trainer, pictures, trainer.global_step)
        self.seconds += time.perf_counter() - start

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # A validation pass that ended in an exception leaves its hook behind.
        if self._hook is not None:
            self._hook.remove()
        self._tracker, self._hook, self._logits = None, None, None
        super().teardown(trainer, pl_module, stage)
