"""Augmentation and normalisation of whole uint8 batches, on the training device."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor

from convnet import keys
from convnet.checks import ConfigError, non_negative_int, refuse


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Return each image shifted by up to `padding` pixels on each axis, with zeros where
    it moved in from outside (the classic pad-and-random-crop of CIFAR training)."""
    return crop_and_flip(images, padding, False, generator)


def random_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Return the batch with a random half of the images mirrored left-right."""
    return crop_and_flip(images, 0, True, generator)


def crop_and_flip(images: Tensor, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Return random_flip(random_crop(images, padding)) when `flip`, else the crop alone,
    with the same draws from `generator` (the shifts, then the mirrored images).

    The batch is copied once: each image's crop is one window of the flat padded batch,
    taken with index_select, where a gather per pixel costs 5x as long on the CPU (and a
    mirrored image is a window of the mirrored batch, shifted to match): a CropSource of
    the batch itself.
    """
    if padding <= 0 and not flip:
        return images
    every = torch.arange(images.shape[0], device=images.device)
    return CropSource(images, padding, flip)(every, generator)


# The most a CropSource may hold; a larger training split is cropped batch by batch.
CROP_SOURCE_MAX_BYTES = 4 * 2**30
# The most a split resized once may hold; a larger one is resized batch by batch.
RESIZED_SPLIT_MAX_BYTES = 4 * 2**30
# Images resized at a time: bounds the float copy torchvision makes off the CPU.
RESIZE_CHUNK = 4096


def resize(images: Tensor, size: Sequence[int]) -> Tensor:
    """Return uint8 `images` (N, C, H, W) resized to `size` (height, width): bilinear,
    antialiased, rounded back to uint8, as torchvision's Resize does a uint8 image. Each
    image's result depends on it alone, so a split resized once and a batch of it resized
    on its own give the same pixels."""
    size = list(size)
    if images.shape[0] <= RESIZE_CHUNK:
        return F.resize(images, size, antialias=True)
    out = images.new_empty((images.shape[0], images.shape[1], *size))
    for start in range(0, images.shape[0], RESIZE_CHUNK):
        chunk = slice(start, start + RESIZE_CHUNK)
        out[chunk] = F.resize(images[chunk], size, antialias=True)
    return out


class CropSource:
    """A training split, zero-padded (and mirrored, with `flip`) once, in the network's
    memory format, from which a batch's random crops are one gather: crop_and_flip of the
    batch's images, with the same draws from the generator, equal to the pixel.

    crop_and_flip pads, mirrors and gathers every batch anew, and a channels_last network
    then needs the float batch converted: 0.85 ms more a step for a tiny network at batch 32
    on 2 CPU cores (6.9 against 6.1 ms). The price is memory: the padded split, twice with
    `flip` (CIFAR-10's 50,000 training images with padding 4: 480 MB of uint8).
    """

    def __init__(
        self,
        images: Tensor,
        padding: int,
        flip: bool,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        n, channels, height, width = images.shape
        padded = torch.nn.functional.pad(images, (padding,) * 4) if padding > 0 else images
        if flip:  # (2N, ...): image i mirrored at i + N
            padded = torch.cat([padded, padded.flip(3)])
        self.channels_last = memory_format == torch.channels_last
        self.count, self.padding, self.flip = n, padding, flip
        self.shape = (channels, height, width)
        padded_height, padded_width = height + 2 * padding, width + 2 * padding
        plane = padded_height * padded_width
        if self.channels_last:
            # (2N, H+2p, W+2p, C): a crop's rows are runs of W*C bytes, channels inside.
            padded = padded.permute(0, 2, 3, 1).contiguous()
            self.image_stride, self.row_stride, self.pixel_stride = (
                plane * channels,
                padded_width * channels,
                channels,
            )
            span = ((height - 1) * padded_width + width) * channels
            self.strides = (span, 1, self.row_stride, channels)
        else:
            padded = padded.contiguous()
            self.image_stride, self.row_stride, self.pixel_stride = (
                channels * plane,
                padded_width,
                1,
            )
            span = (channels - 1) * plane + (height - 1) * padded_width + width
            self.strides = (span, plane, padded_width, 1)
        self.padded = padded
        # Row k is the span of bytes from flat position k: a crop is the row at its first pixel.
        self._windows = padded.view(-1).unfold(0, span, 1)

    @staticmethod
    def bytes_for(images: Tensor, padding: int, flip: bool) -> int:
        """Return the bytes a CropSource of `images` holds."""
        n, channels, height, width = images.shape
        size = n * channels * (height + 2 * padding) * (width + 2 * padding)
        return size * images.element_size() * (2 if flip else 1)

    def __call__(self, index: Tensor, generator: torch.Generator) -> Tensor:
        """Return the crops of images `index`: (N, C, H, W) uint8 in the memory format."""
        n, padding, device = index.numel(), self.padding, index.device
        drawn_on = generator.device
        # The draws of crop_and_flip, in its order: the shifts, then the mirrored images.
        if padding > 0:
            shifts = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=drawn_on)
            rows, cols = shifts.to(device)
        else:
            rows = cols = torch.zeros((), dtype=torch.long, device=device)
        sample = index
        if self.flip:
            mirrored = (torch.rand(n, generator=generator, device=drawn_on) < 0.5).to(device)
            sample = index + self.count * mirrored
            # The crop at column c, mirrored, is the mirrored image's crop at column 2p - c.
            cols = torch.where(mirrored, 2 * padding - cols, cols)
        start = sample * self.image_stride + rows * self.row_stride + cols * self.pixel_stride
        windows = self._windows.index_select(0, start)
        crops = windows.as_strided((n, *self.shape), self.strides)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return crops.contiguous(memory_format=layout)


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
        self._made: dict[tuple, tuple[Tensor, Tensor]] = {}  # (scale, shift) by device, layout

    def __call__(
        self, images: Tensor, training: bool, generator: torch.Generator | None = None
    ) -> Tensor:
        """Return the float batch; `generator` (on the batch's device) drives augmentation."""
        if self.image_size is not None and tuple(images.shape[-2:]) != self.image_size:
            images = resize(images, self.image_size)
        if training and generator is not None:
            images = crop_and_flip(images, self.crop_padding, self.flip, generator)
        return self.normalise(images)

    def normalise(self, images: Tensor) -> Tensor:
        """Return the float batch of uint8 `images`, in their memory format."""
        scale, shift = self._operands(images)
        # uint8 times float is float: one pass.
        return torch.mul(images, scale).add_(shift)

    def _operands(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Return the scale and shift for `images`, made once per device and layout (no
        host-to-device copy a batch): (1, C, 1, 1), or for a channels_last batch full-size
        (1, C, H, W) channels_last, where one channel value every C bytes defeats
        vectorising a (1, C, 1, 1) operand (2 CPU cores, 32 CIFAR images: 20 against 120 us).
        """
        channels_last = (
            images.dim() == 4
            and not images.is_contiguous()
            and images.is_contiguous(memory_format=torch.channels_last)
        )
        key = (images.device, tuple(images.shape[1:]) if channels_last else None)
        operands = self._made.get(key)
        if operands is None:
            scale, shift = self.scale.to(images.device), self.shift.to(images.device)
            if channels_last:
                scale, shift = (
                    t.expand(1, *images.shape[1:]).contiguous(memory_format=torch.channels_last)
                    for t in (scale, shift)
                )
            operands = self._made[key] = (scale, shift)
        return operands
