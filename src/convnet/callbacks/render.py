"""Tensors -> image grids for TensorBoard and PNG files: scaling, tiling, colour and text.

Every picture convnet draws is made here (`image_grid`, `labelled_grid`), so the same
weights or activations look the same in TensorBoard and in the files scripts/visualize.py
writes. Pictures are float (3, H, W) tensors in [0, 1] on the CPU.

Sized for TensorBoard's own display (2.21, a 1600x1400 window, default settings): Time
Series fits an image into a 454x215 box, Images scales it to a 350-pixel-wide card. A
picture of at most MAX_SIZE shows at 70% of its pixels or more in both, so FONT_SIZE text
is 14 px or more on screen. Explanations go in the picture's description, not in it.
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
TIME_SERIES_BOX = (454, 215)  # (width, height) TensorBoard's Time Series fits an image into
IMAGES_CARD_WIDTH = 350  # TensorBoard's Images dashboard scales an image to this width
MAX_SIZE = (500, 300)  # (width, height): shown at >= 70% in both dashboards
FONT_SIZE = 20  # pixels: >= 14 px on screen at 70%
LINE_HEIGHT = 24  # pixels per line of text under a tile
BACKGROUND = 1.0  # white between tiles and behind text


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
        draw.text(
            (width / 2, row * LINE_HEIGHT + 1), line, fill="black", font=text_font(), anchor="ma"
        )
    return _from_pil(strip)


def display_scale(width: int, height: int) -> tuple[float, float]:
    """Return the share of its pixels a width x height picture is shown at in TensorBoard's
    (Time Series, Images) dashboards."""
    box_width, box_height = TIME_SERIES_BOX
    return min(1.0, box_width / width, box_height / height), IMAGES_CARD_WIDTH / width


def text_width(text: str, size: int = FONT_SIZE) -> int:
    """Return the width in pixels of one line of `text` in the picture font."""
    return int(np.ceil(text_font(size).getlength(text)))


def fit_text(text: str, width: int) -> str:
    """Return `text`, or as much of it as fits in `width` pixels followed by "…"."""
    if text_width(text) <= width:
        return text
    while text and text_width(f"{text}…") > width:
        text = text[:-1]
    return f"{text}…"


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


def image_grid(
    tiles: Tensor,
    nrow: int = 8,
    scale: str | None = "per_tile",
    symmetric: bool = False,
    upscale: int = 1,
    padding: int = 2,
    unit: str = "tile",
) -> Tensor:
    """Return a (3, H, W) picture in [0, 1] of `tiles` (N, C, H, W) laid out `nrow` per row.

    scale: how values become grey levels (see `rescale`); None when the tiles are
        already colours in [0, 1].
    upscale: nearest-neighbour factor, so a 3x3 kernel shows as visible squares.
    """
    if scale is not None:
        tiles, _ = rescale(tiles, scale, symmetric, unit)
    tiles = tiles.detach().float().cpu()
    if upscale > 1:
        tiles = resize(tiles, (tiles.shape[-2] * upscale, tiles.shape[-1] * upscale))
    return make_grid(as_rgb(tiles), nrow=nrow, padding=padding, pad_value=BACKGROUND)


def labelled_grid(
    tiles: Tensor,
    labels: Sequence[str],
    columns: int,
    gap: int = 6,
    cell_width: int | None = None,
) -> Tensor:
    """Return a (3, H, W) picture of RGB `tiles` (N, 3, h, w) in [0, 1], `columns` per row,
    each with its label's lines ("\\n") centred underneath, never cut: a cell is as wide
    as its tile or its widest label line (or `cell_width`), plus `gap`."""
    if len(labels) != tiles.shape[0]:
        raise ValueError(f"{len(labels)} labels for {tiles.shape[0]} tiles: give one per tile")
    n, _, h, w = tiles.shape
    lines = [label.split("\n") if label else [] for label in labels]
    per_tile = max((len(tile_lines) for tile_lines in lines), default=0)
    widest = max((text_width(line) for tile_lines in lines for line in tile_lines), default=0)
    width = (cell_width or max(w, widest)) + gap
    height = h + per_tile * LINE_HEIGHT + gap
    rows = -(-n // columns)
    canvas = np.full((rows * height, min(n, columns) * width, 3), 255, dtype=np.uint8)
    pixels = (tiles.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).numpy()
    for index in range(n):
        y, x = (index // columns) * height + gap // 2, (index % columns) * width + (width - w) // 2
        canvas[y : y + h, x : x + w] = pixels[index]
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for index, tile_lines in enumerate(lines):
        centre = (index % columns) * width + width / 2
        top = (index // columns) * height + gap // 2 + h + 1
        for row, line in enumerate(tile_lines):
            draw.text((centre, top + row * LINE_HEIGHT), line, fill="black", font=text_font(),
                      anchor="ma")  # fmt: skip
    return _from_pil(image)


def bars(values: Tensor, width: int, height: int = 5) -> Tensor:
    """Return (N, 3, height, width) strips: a dark bar as long as each value in [0, 1]
    over a light grey track (a filter's norm against the largest)."""
    strips = torch.full((len(values), 3, height, width), 0.85)
    lengths = (values.detach().float().cpu().clamp(0, 1) * width).round().long()
    for index, length in enumerate(lengths.tolist()):
        strips[index, :, :, :length] = 0.15
    return strips


def to_uint8(image: Tensor) -> np.ndarray:
    """Return a (3, H, W) picture in [0, 1] as a (H, W, 3) uint8 array."""
    pixels = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.permute(1, 2, 0).numpy()


def save_png(image: Tensor, path: Path) -> Path:
    """Write a (3, H, W) picture in [0, 1] to `path` as PNG; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _to_pil(image).save(path)
    return path
