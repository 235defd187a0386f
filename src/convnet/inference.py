"""A trained network ready to classify images: its weights, class names and eval transform.

A checkpoint is data: it is read only through convnet.evaluate.load_checkpoint (tensors and
plain values) and the network rebuilt from its stored config through run_config, which
refuses a config naming code. Images go through the eval transform the run's data config
describes: resized to its image size, converted to its channels, and normalised by its mean
and std as validation batches are (convnet.data.augment.BatchTransform, no augmentation).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as F

from convnet import keys
from convnet.build import build_model, pick_device
from convnet.checkpoints import CheckpointError, check_compatible
from convnet.checks import ConfigError, positive_int, to_pair
from convnet.data.augment import BatchTransform
from convnet.data.images import read_image
from convnet.evaluate import load_checkpoint, run_config
from convnet.module import CLASSES_KEY

log = logging.getLogger(__name__)

# Where ImageClassifier keeps the network: its state_dict keys start with this.
MODULE_PREFIX = "model."
# Image files are read as RGB; a network takes them as RGB or as greyscale.
FILE_CHANNELS = (1, 3)


class EvalTransform:
    """Images as read from files (uint8 (3, H, W) RGB, any size) -> the normalised float
    batch (N, C, H, W) the network takes, as its data config describes."""

    def __init__(
        self,
        in_channels: int,
        image_size: int | Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        self.in_channels = positive_int(in_channels, keys.IN_CHANNELS)
        self.image_size = to_pair(image_size, keys.IMAGE_SIZE)
        self.batch_transform = BatchTransform(mean, std, image_size=self.image_size)

    @classmethod
    def of(cls, data_cfg: DictConfig) -> EvalTransform:
        """Return the eval transform of a data config."""
        return cls(data_cfg.in_channels, data_cfg.image_size, data_cfg.mean, data_cfg.std)

    def check_takes_files(self) -> None:
        """Raise ConfigError when the network takes channels that image files do not have."""
        if self.in_channels not in FILE_CHANNELS:
            raise ConfigError(
                f"data.in_channels={self.in_channels}: this network takes {self.in_channels}-"
                "channel images, and image files are read as RGB (3 channels) or converted to "
                "greyscale (1); give it tensors of its own channels instead of files"
            )

    def image(self, rgb: Tensor) -> Tensor:
        """Return a uint8 (3, H, W) RGB image as the uint8 (C, *image_size) image the
        network takes."""
        self.check_takes_files()
        if self.in_channels == 1:
            # A greyscale file (read as three equal channels) keeps its values exactly; luma
            # (ITU-R 601, as PIL's "L") would round some of them down by one.
            grey = torch.equal(rgb[0], rgb[1]) and torch.equal(rgb[1], rgb[2])
            rgb = rgb[:1] if grey else F.rgb_to_grayscale(rgb)
        if tuple(rgb.shape[1:]) != self.image_size:
            # As image folders resize each file (convnet.data.files.ImageFileDataset).
            rgb = F.resize(rgb, list(self.image_size), antialias=True)
        return rgb

    def batch_of(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        """Return `images` as one uint8 (N, C, H, W) batch of the network's channels (any
        H, W: the transform resizes), or raise ValueError saying what is wrong and the fix."""
        shape = f"({self.in_channels}, H, W)"
        fix = "read files with transform.read(path), or convert RGB tensors with transform.image"
        if isinstance(images, Tensor):
            if images.dim() != 4:
                raise ValueError(
                    f"a batch of images is a (N, C, H, W) tensor, not one of shape "
                    f"{tuple(images.shape)}; give one image as a list: [image]"
                )
            batch = images
        else:
            images = list(images)
            if not images:
                return torch.empty((0, self.in_channels, *self.image_size), dtype=torch.uint8)
            for index, image in enumerate(images):
                if not isinstance(image, Tensor) or image.dim() != 3:
                    what = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                    raise ValueError(f"image {index} is {what}, not a {shape} tensor: {fix}")
            sizes = {tuple(image.shape) for image in images}
            if len(sizes) > 1:
                raise ValueError(
                    f"the images have different shapes ({', '.join(map(str, sorted(sizes)))}): "
                    f"{fix}, which give each the network's {self.image_size} size"
                )
            batch = torch.stack(images)
        if batch.dtype != torch.uint8:
            raise ValueError(
                f"the images are {batch.dtype}, not uint8 (0..255, as files are read): {fix}; "
                "a float image in [0, 1] is (image * 255).round().to(torch.uint8)"
            )
        if batch.shape[1] != self.in_channels:
            raise ValueError(
                f"the images have {batch.shape[1]} channels and this network takes "
                f"{self.in_channels}: {fix}, which convert them"
            )
        return batch

    def read(self, path: str | Path) -> Tensor:
        """Return the image file at `path` as the uint8 (C, *image_size) the network takes."""
        return self.image(read_image(str(path)))

    def __call__(
        self, images: Tensor | Sequence[Tensor], device: torch.device | None = None
    ) -> Tensor:
        """Return uint8 images (a (N, C, H, W) batch, or (C, H, W) images from `image` or
        `read`) as the normalised float batch, on `device`; raise ValueError naming what
        does not fit the network (rank, dtype, channels), before it is run."""
        batch = self.batch_of(images)
        if device is not None:
            batch = batch.to(device)
        return self.batch_transform(batch, training=False)


@dataclass
class LoadedModel:
    """A network in eval mode on `device`, with what classifying images with it takes."""

    network: nn.Module
    classes: list[str]
    transform: EvalTransform
    # The sections it was rebuilt from (data, model, and module when known).
    config: DictConfig
    device: torch.device
    # The run scored val and test on the mean logits of each image and its mirror image.
    test_time_flip: bool = False

    @torch.inference_mode()
    def logits(self, batch: Tensor) -> Tensor:
        """Return the logits (N, num_classes) of a transformed batch, as eval scores them
        (ImageClassifier.evaluation_logits: with test_time_flip, the mean over the mirror)."""
        batch = batch.to(self.device)
        logits = self.network(batch)
        if self.test_time_flip:
            logits = (logits + self.network(batch.flip(3))) / 2
        return logits

    def probabilities(self, images: Sequence[Tensor]) -> Tensor:
        """Return the class probabilities (N, num_classes) of uint8 images (from
        `transform.read` or `transform.image`), in float32 on the CPU."""
        logits = self.logits(self.transform(images, self.device))
        return logits.float().softmax(dim=1).cpu()


def load_checkpoint_model(
    path: str | Path, data_overrides: DictConfig | None = None, device: str = "auto"
) -> LoadedModel:
    """Return the network of a convnet checkpoint, ready to classify (see the module).

    data_overrides: `data.*` keys merged into the stored data config (as eval's `data`).
    device: "auto" (CUDA when there, else the CPU), "cpu" or "cuda".
    """
    checkpoint = load_checkpoint(path)
    run = run_config(checkpoint, data_overrides, path)
    network = build_model(run.model, pretrained_weights=False)
    # The LightningModule's state_dict holds the network's tensors under `model.`.
    state = {
        key.removeprefix(MODULE_PREFIX): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(MODULE_PREFIX)
    }
    check_compatible(state, network, path)
    network.load_state_dict(state)
    classes = stored_classes(checkpoint, run, path)
    flip = bool(run.get("module", {}).get("test_time_flip", False))
    return ready(network, run, classes, device, test_time_flip=flip)


def ready(
    network: nn.Module,
    config: DictConfig,
    classes: list[str],
    device: str = "auto",
    test_time_flip: bool = False,
) -> LoadedModel:
    """Return `network` in eval mode on `device` as a LoadedModel of data config `config.data`."""
    chosen = pick_device(device)
    network = network.eval().to(chosen)
    if chosen.type == "cuda":
        # cuDNN's fastest convolutions want NHWC, as in training (the batches come NHWC).
        network = network.to(memory_format=torch.channels_last)
    return LoadedModel(
        network, classes, EvalTransform.of(config.data), config, chosen, test_time_flip
    )


def stored_classes(checkpoint: dict[str, Any], run: DictConfig, path: str | Path) -> list[str]:
    """Return the class names a checkpoint holds, checked against its number of classes;
    for a checkpoint written before they were stored, those of its data (or "0", "1"...
    when the data cannot be loaded here)."""
    num_classes = int(run.data.num_classes)
    classes = checkpoint.get(CLASSES_KEY)
    if classes is None:
        return _classes_of_data(run, path)
    check_classes(classes, num_classes, f"checkpoint {path}")
    return list(classes)


def check_classes(classes: Any, num_classes: int, source: str) -> None:
    """Raise CheckpointError unless `classes` is a list of `num_classes` names."""
    if not (isinstance(classes, list) and all(isinstance(name, str) for name in classes)):
        raise CheckpointError(
            f"{source}: its class names are a {type(classes).__name__}, not a list of names. "
            "Use a file written by convnet."
        )
    if len(classes) != num_classes:
        raise CheckpointError(
            f"{source} names {len(classes)} classes but its network has {num_classes} "
            "outputs. Use a file written by convnet, unaltered."
        )


def _classes_of_data(run: DictConfig, path: str | Path) -> list[str]:
    log.info("checkpoint %s holds no class names: reading them from its data", path)
    try:
        return list(instantiate(run.data).classes)
    except (OSError, ValueError, InstantiationException) as error:
        log.warning(
            "checkpoint %s holds no class names and its data cannot be loaded here (%s): "
            "classes are named by their index; give the data's location as a data.* "
            "override to name them",
            path,
            error,
        )
        return [str(index) for index in range(int(run.data.num_classes))]
