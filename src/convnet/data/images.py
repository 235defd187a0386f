"""One image file -> uint8 (3, H, W) RGB or (1, H, W) greyscale, with the pixel depths PIL
does not scale itself."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps


class PixelFormatError(ValueError):
    """An image whose pixel values convnet cannot map to 0..255; the message says why."""


def read_image(path: str, channels: int = 3) -> torch.Tensor:
    """Return the image at `path` as uint8 (3, H, W) RGB, or (1, H, W) greyscale when
    `channels` is 1; greyscale, palette and RGBA images are converted.

    16-bit greyscale (0..65535) and float greyscale (0..1) are scaled to 0..255; PIL reads
    16-bit RGB(A) as 8-bit itself. Colour is turned to grey by PIL's luma (ITU-R 601), which
    keeps a grey pixel stored as RGB exactly. Raises PixelFormatError for values outside
    those ranges.
    """
    if channels not in (1, 3):
        raise ValueError(f"images are read with 1 or 3 channels, not {channels}")
    # PIL, like torchvision's ImageFolder: it reads every format in IMG_EXTENSIONS, and
    # torchvision.io's decoders are deprecated since torchvision 0.29.
    with Image.open(path) as opened:
        upright = ImageOps.exif_transpose(opened)  # cameras store rotation in EXIF
        pixels = _pixels(upright, path, channels)
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()  # (H, W, C) -> (C, H, W)


def _pixels(image: Image.Image, path: str, channels: int) -> np.ndarray:
    """Return the uint8 (H, W, channels) pixels of `image`, scaling wide greyscale to 0..255."""
    # PIL's convert("RGB") clips modes I;16, I and F at 255 instead of scaling them: a
    # 16-bit PNG would come out almost all white.
    if image.mode.startswith("I;16") or image.mode == "I":
        full_scale, kind = 65535, "16-bit integer"
    elif image.mode == "F":
        full_scale, kind = 1.0, "float"
    elif channels == 1:
        return np.array(image.convert("L"))[:, :, None]
    else:
        return np.array(image.convert("RGB"))
    values = np.asarray(image, dtype=np.float64)  # (H, W)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not (low >= 0 and high <= full_scale):  # also refuses NaN
        raise PixelFormatError(
            f"image {path} has {'32-bit integer' if image.mode == 'I' else kind} greyscale "
            f"pixels from {low:g} to {high:g} (PIL mode {image.mode}); convnet scales "
            f"{kind} greyscale from 0..{full_scale:g} to 0..255 and cannot tell what these "
            "values mean. Convert the file to 8-bit or 16-bit greyscale or RGB, or delete it"
        )
    scaled = np.rint(values * (255 / full_scale)).astype(np.uint8)
    return np.repeat(scaled[:, :, None], channels, axis=2)  # (H, W) -> (H, W, channels)
