"""Augmentation and normalisation of whole uint8 batches, on the training device."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from convnet import keys
from convnet.checks import ConfigError, non_negative_int, refuse


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Return each image shifted by up to `padding` pixels on each axis, with zeros where
    it moved in from outside (the classic pad-and-random-crop of CIFAR training)."""
    if padding <= 0:
        return images
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)  # (N, C, H+2p, W+2p)
    shifts = torch.randint(
        0, 2 * padding + 1, (2, n), generator=generator, device=generator.device
    ).to(images.device)
    rows = (shifts[0, :, None] + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (shifts[1, :, None] + torch.arange(width, device=images.device))[:, None, None, :]
    rows = rows.expand(n, padded.shape[1], height, padded.shape[3])
    padded = padded.gather(2, rows)  # (N, C, H, W+2p)
    cols = cols.expand(n, padded.shape[1], height, width)
    return padded.gather(3, cols)


def random_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Return the batch with a random half of the images mirrored left-right."""
    flip = torch.rand(images.shape[0], generator=generator, device=generator.device) < 0.5
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(3), images)


class BatchTransform:
    """uint8 (N, C, H, W) -> normalised float batch, with augmentation when training."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int = 0,
        flip: bool = False,
        image_size: Sequence[int] | None = None,
    ) -> None:
        if len(mean) != len(std):
            raise ConfigError(
                f"data.mean {list(mean)} and data.std {list(std)} differ in length: "
                "give one mean and one std per channel"
            )
        if any(s <= 0 for s in std):
            raise refuse("data.std", list(std), "numbers > 0, one per channel")
        crop_padding = non_negative_int(crop_padding, keys.CROP_PADDING)
        # Normalise after scaling uint8 to [0, 1]: fold both into one multiply-add.
        self.scale = torch.tensor([1 / (255 * s) for s in std])[None, :, None, None]
        self.shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)])
        self.shift = self.shift[None, :, None, None]
        self.crop_padding = crop_padding
        self.flip = flip
        self.image_size = tuple(image_size) if image_size is not None else None

    def __call__(
        self, images: Tensor, training: bool, generator: torch.Generator | None = None
    ) -> Tensor:
        """Return the float batch; `generator` (on the batch's device) drives augmentation."""
        if self.image_size is not None and tuple(images.shape[-2:]) != self.image_size:
            images = torch.nn.functional.interpolate(
                images.float(), size=self.image_size, mode="bilinear", antialias=True
            ).clamp_(0, 255)
        if training and generator is not None:
            images = random_crop(images, self.crop_padding, generator)
            if self.flip:
                images = random_flip(images, generator)
        scale, shift = self.scale.to(images.device), self.shift.to(images.device)
        # In the images' layout: the LightningModule gives them its network's (channels_last
        # where that is faster, convnet.hardware).
        return images.float() * scale + shift
