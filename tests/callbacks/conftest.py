"""Tiny data, networks and a stand-in trainer for the picture callbacks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator, ImageEvent
from torch import nn

from convnet.callbacks.base import PictureContext
from convnet.data import ImageDataModule
from convnet.data.shapes import ShapesSource
from convnet.models import VGG


@pytest.fixture(scope="session")
def shapes_data() -> ImageDataModule:
    """Return a set-up datamodule of 10 shape classes, RGB 32x32, 40 validation images."""
    datamodule = ImageDataModule(
        ShapesSource(num_train=40, num_val=40, num_test=10, image_size=32, seed=0),
        in_channels=3,
        num_classes=10,
        image_size=[32, 32],
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
    )
    datamodule.setup()
    return datamodule


@pytest.fixture
def small_vgg() -> nn.Module:
    """Return a seeded three-stage VGG for 32x32 RGB images, in train mode."""
    torch.manual_seed(0)
    return VGG([8, "M", 16, "M", 16, "M"], in_channels=3, num_classes=10, image_size=32)


@pytest.fixture
def context(small_vgg: nn.Module, shapes_data: ImageDataModule) -> PictureContext:
    """Return the drawing context of `small_vgg` on the shapes data, on the CPU."""
    return PictureContext(small_vgg, shapes_data, "cpu")


@pytest.fixture
def fake_trainer(tmp_path: Path, shapes_data: ImageDataModule):
    """Return a factory of stand-ins for (trainer, pl_module) logging into tmp_path/tb,
    with just what the picture callbacks read."""

    def make(network: nn.Module, step: int = 0, epoch: int = 0, max_epochs: int = 4):
        logger = TensorBoardLogger(tmp_path, name="tb", version="")
        trainer = SimpleNamespace(
            loggers=[logger],
            is_global_zero=True,
            world_size=1,
            global_step=step,
            current_epoch=epoch,
            max_epochs=max_epochs,
            should_stop=False,
            datamodule=shapes_data,
        )
        return trainer, SimpleNamespace(model=network, device=torch.device("cpu"))

    return make


def read_events(folder: Path) -> EventAccumulator:
    """Return TensorBoard's own reader over `folder`, loaded with every event."""
    events = EventAccumulator(
        str(folder), size_guidance={"images": 0, "histograms": 0, "tensors": 0}
    )
    events.Reload()
    return events


def logged_images(events: EventAccumulator) -> dict[str, list[ImageEvent]]:
    """Return the pictures `events` holds by tag: image-plugin tensors (width, height, PNG),
    as convnet writes them, read like the older image values."""
    found = {}
    for tag in events.Tags()["tensors"]:
        if events.SummaryMetadata(tag).plugin_data.plugin_name != "images":
            continue
        found[tag] = []
        for event in events.Tensors(tag):
            width, height, png = event.tensor_proto.string_val
            found[tag].append(ImageEvent(event.wall_time, event.step, png, int(width), int(height)))
    return found
