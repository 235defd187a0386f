"""Tensors -> image grids for TensorBoard and PNG files: scaling, tiling, colour and text.

Every picture convnet draws goes through `image_grid`, so the same weights or activations
look the same in TensorBoard and in the files scripts/visualize.py writes. Pictures are
float (3, H, W) tensors in [0, 1] on the CPU, what `SummaryWriter.add_image` takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

SCALES = ("per_tile", "shared")
# Matplotlib's viridis at nine evenly spaced points: perceptually uniform, readable in grey.
_VIRIDIS = torch.tensor(
    [
        [0.267, 0.005, 0.329],
        [0.279, 0.175, 0.483],
        [0.230, 0.322, 0.546],
        [0.173, 0.449, 0.558],
        [0.128, 0.567, 0.551],
        [0.158, 0.684, 0.502],
        [0.369, 0.789, 0.383],
        [0.678, 0.864, 0.190],
        [0.993, 0.906, 0.144],
    ]
)
FONT_SIZE = 10
LINE_HEIGHT = 12  # pixels per line of text under a tile or above a picture
BACKGROUND = 1.0  # white between tiles and behind text
CAPTION_WIDTH = 320  # pixels: pictures with a caption are at least this wide


def check_scale(scale: str, key: str = "scale") -> str:
    """Return `scale` when it is one of SCALES, else raise naming the key and the choices."""
    if scale not in SCALES:
        raise ValueError(f"{key}={scale!r} is not allowed: use one of {', '.join(SCALES)}.")
    return scale


def rescale(
    tiles: Tensor, scale: str = "per_tile", symmetric: bool = False, unit: str = "tile"
) -> tuple[Tensor, str]:
    """Return `tiles` (N, C, H, W) mapped into [0, 1], and a sentence stating the mapping.

    scale: "per_tile" gives each tile (each of the N) its own range, "shared" one range.
    symmetric: map 0 to the middle and +-max|x| to the ends (for signed weights);
        otherwise map the minimum to 0 and the maximum to 1.
    unit: what a tile is, for the sentence ("filter", "channel").
    """
    check_scale(scale)
    tiles = tiles.detach().float().cpu()
    dims = (1, 2, 3) if scale == "per_tile" else (0, 1, 2, 3)
    if symmetric:
        bound = tiles.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12)
        scaled = 0.5 + 0.5 * tiles / bound
        stated = (
            f"0 = middle, each {unit} scaled to ±its own max |value|"
            if scale == "per_tile"
            else f"0 = middle, shared scale ±{bound.max().item():.3g}"
        )
    else:
        low = tiles.amin(dim=dims, keepdim=True)
        span = (tiles.amax(dim=dims, keepdim=True) - low).clamp_min(1e-12)
        scaled = (tiles - low) / span
        stated = (
            f"each {unit} scaled from its own min to max"
            if scale == "per_tile"
            else f"shared scale {low.min().item():.3g} to {(low + span).max().item():.3g}"
        )
    return scaled.clamp(0, 1), stated


def resize(tiles: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Return `tiles` (N, C, H, W) resized to `size` with nearest-neighbour (pixels stay square)."""
    size = (size, size) if isinstance(size, int) else size
    if tuple(tiles.shape[-2:]) == tuple(size):
        return tiles
    return F.interpolate(tiles.float(), size=size, mode="nearest-exact")


def _lookup_table(anchors: Tensor, size: int = 256) -> Tensor:
    position = torch.linspace(0, len(anchors) - 1, size)
    low = position.floor().long().clamp(max=len(anchors) - 2)
    weight = (position - low)[:, None]
    return anchors[low] * (1 - weight) + anchors[low + 1] * weight  # (size, 3)


VIRIDIS_TABLE = _lookup_table(_VIRIDIS)


def colormap(values: Tensor) -> Tensor:
    """Return (N, 3, H, W) viridis colours for `values` (N, 1, H, W) in [0, 1]."""
    index = (values.squeeze(1).clamp(0, 1) * (len(VIRIDIS_TABLE) - 1)).round().long()
    return VIRIDIS_TABLE[index].permute(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)


def as_rgb(tiles: Tensor) -> Tensor:
    """Return tiles with 3 channels: greyscale repeated, RGB kept, others averaged."""
    if tiles.shape[1] == 3:
        return tiles
    if tiles.shape[1] != 1:
        tiles = tiles.mean(dim=1, keepdim=True)
    return tiles.expand(-1, 3, -1, -1)


@lru_cache(maxsize=4)
def text_font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    """Return Pillow's built-in font at `size` pixels (no font file needed)."""
    return ImageFont.load_default(size=size)


def _to_pil(image: Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(image))


def _from_pil(image: Image.Image) -> Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).float() / 255


def _text_strip(width: int, lines: Sequence[str]) -> Tensor:
    strip = Image.new("RGB", (width, LINE_HEIGHT * len(lines)), "white")
    draw = ImageDraw.Draw(strip)
    for row, line in enumerate(lines):
        draw.text((1, row * LINE_HEIGHT), line, fill="black", font=text_font(FONT_SIZE))
    return _from_pil(strip)


def label_tiles(tiles: Tensor, labels: Sequence[str]) -> Tensor:
    """Return RGB `tiles` (N, 3, H, W) with each label's lines ("\\n") written underneath."""
    if len(labels) != tiles.shape[0]:
        raise ValueError(f"{len(labels)} labels for {tiles.shape[0]} tiles: give one per tile")
    lines = [label.split("\n") for label in labels]
    per_tile = max(len(tile_lines) for tile_lines in lines)
    # One strip holds every label, drawn in a single pass, then cut into one per tile.
    strip = _text_strip(
        tiles.shape[-1], [line for tl in lines for line in [*tl, *[""] * (per_tile - len(tl))]]
    )
    strips = strip.reshape(3, len(labels), per_tile * LINE_HEIGHT, -1).transpose(0, 1)
    return torch.cat([tiles.float().cpu(), strips], dim=2)


def _wrapped(text: str, width: int) -> list[str]:
    font, lines = text_font(FONT_SIZE), []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and font.getlength(candidate) > width - 2:
                lines.append(line)
                candidate = word
            line = candidate
        lines.append(line)
    return lines


def add_caption(image: Tensor, text: str) -> Tensor:
    """Return the (3, H, W) `image` with `text` above it, wrapped to the picture's width
    (at least CAPTION_WIDTH pixels; a narrower image is padded on the right)."""
    if image.shape[-1] < CAPTION_WIDTH:
        image = F.pad(image, (0, CAPTION_WIDTH - image.shape[-1]), value=BACKGROUND)
    return torch.cat([_text_strip(image.shape[-1], _wrapped(text, image.shape[-1])), image], dim=1)


def image_grid(
    tiles: Tensor,
    nrow: int = 8,
    scale: str | None = "per_tile",
    symmetric: bool = False,
    upscale: int = 1,
    caption: str | None = None,
    padding: int = 2,
    unit: str = "tile",
) -> Tensor:
    """Return a (3, H, W) picture in [0, 1] of `tiles` (N, C, H, W) laid out `nrow` per row.

    scale: how values become grey levels (see `rescale`); None when the tiles are
        already colours in [0, 1]. The caption gets the scale's sentence appended.
    upscale: nearest-neighbour factor, so a 3x3 kernel shows as visible squares.
    """
    stated = ""
    if scale is not None:
        tiles, stated = rescale(tiles, scale, symmetric, unit)
    tiles = tiles.detach().float().cpu()
    if upscale > 1:
        tiles = resize(tiles, (tiles.shape[-2] * upscale, tiles.shape[-1] * upscale))
    grid = make_grid(as_rgb(tiles), nrow=nrow, padding=padding, pad_value=BACKGROUND)
    text = "\n".join(part for part in (caption, stated) if part)
    return add_caption(grid, text) if text else grid


def to_uint8(image: Tensor) -> np.ndarray:
    """Return a (3, H, W) picture in [0, 1] as a (H, W, 3) uint8 array."""
    pixels = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.permute(1, 2, 0).numpy()


def save_png(image: Tensor, path: Path) -> Path:
    """Write a (3, H, W) picture in [0, 1] to `path` as PNG; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _to_pil(image).save(path)
    return path
