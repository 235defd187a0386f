"""A fixed set of validation images, the same every epoch and every run, for the pictures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import UnidentifiedImageError
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS

from convnet.checks import counted
from convnet.data.images import read_image
from convnet.data.splits import TensorSplit

UNKNOWN = -1  # label of an image given by the user


@dataclass(frozen=True)
class Samples:
    """Images to show and feed: `pixels` (N, C, H, W) in [0, 1] on the CPU at the network's
    input size, `inputs` the normalised batch on the network's device, `labels` (N,)."""

    pixels: Tensor
    inputs: Tensor
    labels: Tensor
    classes: list[str]

    def label_names(self) -> list[str]:
        """Return each sample's class name ("?" where unknown)."""
        return [self.classes[i] if i != UNKNOWN else "?" for i in self.labels.tolist()]

    def __len__(self) -> int:
        return self.labels.shape[0]

    def spread(self, count: int) -> Samples:
        """Return at most `count` of the samples, evenly spaced (so spread over the classes)."""
        if len(self) <= count:
            return self
        index = torch.linspace(0, len(self) - 1, count).round().long()
        return Samples(
            self.pixels[index], self.inputs[index.to(self.inputs.device)], self.labels[index],
            self.classes,
        )  # fmt: skip


def fixed_indices(labels: Tensor, per_class: int, seed: int) -> Tensor:
    """Return indices of `per_class` items of each class (class by class), chosen by `seed`.

    A class's items come from one seeded permutation, so a smaller `per_class` picks a
    prefix of a larger one: every picture shows the same first images.
    """
    if per_class < 1:
        raise ValueError(f"per_class={per_class} must be a positive integer, e.g. 1")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in labels.unique(sorted=True):
        members = (labels == label).nonzero().squeeze(1)
        chosen.append(members[torch.randperm(members.numel(), generator=generator)][:per_class])
    return torch.cat(chosen)


def _val_split(datamodule: Any) -> Any:
    splits = getattr(datamodule, "splits", None)
    if splits is None and hasattr(datamodule, "setup"):
        datamodule.setup("fit")
        splits = getattr(datamodule, "splits", None)
    if splits is None or getattr(splits, "val", None) is None:
        raise ValueError(
            f"{type(datamodule).__name__} has no splits.val: the pictures take their fixed "
            "images from a convnet.data.ImageDataModule's validation split."
        )
    return splits.val


def _labels(split: Any) -> Tensor:
    if isinstance(split, TensorSplit):
        return split.labels
    if hasattr(split, "targets"):
        return torch.as_tensor(split.targets)
    return torch.tensor([int(split[i][1]) for i in range(len(split))])


def _images(split: Any, indices: Tensor) -> Tensor:
    if isinstance(split, TensorSplit):
        return split.images[indices]
    return torch.stack([split[int(i)][0] for i in indices])


def from_uint8(
    images: Tensor, labels: Tensor, datamodule: Any, device: torch.device | str
) -> Samples:
    """Return Samples of uint8 `images` (N, C, H, W), normalised by the datamodule's transform."""
    inputs = datamodule.transform(images.to(device), training=False)
    pixels = images.float()
    if tuple(pixels.shape[-2:]) != tuple(inputs.shape[-2:]):
        pixels = F.interpolate(pixels, size=inputs.shape[-2:], mode="bilinear", antialias=True)
    return Samples(
        pixels=(pixels / 255).clamp(0, 1).cpu(),
        inputs=inputs,
        labels=labels.long().cpu(),
        classes=list(datamodule.classes),
    )


def validation_samples(
    datamodule: Any, per_class: int, seed: int, device: torch.device | str
) -> Samples:
    """Return `per_class` validation images of each class, chosen by `seed`."""
    split = _val_split(datamodule)
    labels = _labels(split)
    indices = fixed_indices(labels, per_class, seed)
    return from_uint8(_images(split, indices), labels[indices], datamodule, device)


def read_image_file(path: Path) -> Tensor:
    """Return the image file `path` as (3, H, W) uint8 RGB; raise naming `image=path` when it
    is missing, a folder, or not an image."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
        some = f", e.g. image={path / inside[0]} ({counted(len(inside), 'image')} there)"
        raise ValueError(f"image={path} is a folder: give one image file{some if inside else ''}.")
    if not path.is_file():
        raise FileNotFoundError(f"image={path}: no such file. Give the path of a PNG or JPEG.")
    try:
        return read_image(str(path))
    except UnidentifiedImageError as error:
        raise ValueError(
            f"image={path}: not an image file PIL can read ({error}). Give a PNG or JPEG."
        ) from error


def image_file_samples(path: Path, datamodule: Any, device: torch.device | str) -> Samples:
    """Return Samples of one image file, with the data's channels and size, label unknown."""
    image = read_image_file(path)  # (3, H, W) uint8 RGB
    if datamodule.in_channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114])[:, None, None]  # ITU-R 601 luma
        image = (image.float() * weights).sum(0, keepdim=True).round().to(torch.uint8)
    return from_uint8(image[None], torch.tensor([UNKNOWN]), datamodule, device)


def pixels_of(inputs: Tensor, datamodule: Any) -> Tensor:
    """Return normalised network inputs (N, C, H, W) as images in [0, 1] on the CPU.

    The datamodule's BatchTransform is undone where it exposes its affine map; otherwise
    each image is stretched from its own min to max.
    """
    inputs = inputs.detach().float().cpu()
    transform = getattr(datamodule, "transform", None)
    scale, shift = getattr(transform, "scale", None), getattr(transform, "shift", None)
    if isinstance(scale, Tensor) and isinstance(shift, Tensor):
        return ((inputs - shift) / scale / 255).clamp(0, 1)
    low = inputs.amin(dim=(1, 2, 3), keepdim=True)
    return (inputs - low) / (inputs.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-12)


def input_range(datamodule: Any, channels: int) -> tuple[Tensor, Tensor]:
    """Return per-channel (low, high) (C,) of network inputs made from pixels 0 and 255
    (the datamodule's affine map; +-3 standard deviations when it exposes none)."""
    transform = getattr(datamodule, "transform", None)
    scale, shift = getattr(transform, "scale", None), getattr(transform, "shift", None)
    if isinstance(scale, Tensor) and isinstance(shift, Tensor):
        return shift.flatten(), (255 * scale + shift).flatten()
    return torch.full((channels,), -3.0), torch.full((channels,), 3.0)
