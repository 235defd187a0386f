"""Conv filters drawn as grids: ranked by L2 norm, numbered, with a norm bar per filter.

The drawing half of convnet.callbacks.filters (which chooses layers and logs): the first
conv as colour tiles, deeper convs as a row per filter and a column per input channel, or
one grey tile per filter averaged over its input channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from convnet.callbacks.render import (
    LINE_HEIGHT,
    _from_pil,
    bars,
    labelled_grid,
    rescale,
    resize,
    text_font,
    text_width,
)
from convnet.callbacks.tags import range_part

FILTER_SCALES = {"per_filter": "per_tile", "shared": "shared"}
DEEP_MODES = ("channels", "mean")
TILES_PER_ROW = 8
TILE_ROWS = 4  # rows of tiles per picture: 32 filters a page
CELL = (36, 30)  # (width, height) of a kernel's cell in the channels grid
BAR_WIDTH = 40  # pixels of a row's norm bar in the channels grid


def filter_norms(weight: Tensor) -> Tensor:
    """Return each filter's L2 norm (out,) of a conv weight (out, in, kh, kw)."""
    return weight.detach().float().flatten(1).norm(dim=1)


def strongest(values: Tensor, count: int) -> Tensor:
    """Return the indices of the `count` largest values, largest first (ties: lower index)."""
    order = torch.sort(values.detach().float().cpu(), descending=True, stable=True).indices
    return order[:count]


@dataclass(frozen=True)
class FilterChoice:
    """Which filters (and input channels, for the channels grid) a layer's pictures show,
    chosen once from the current weights, so the change picture lines up with them."""

    filters: Tensor  # output channels, strongest first
    channels: Tensor  # input channels, most weight in the chosen filters first
    norms: Tensor  # every filter's norm (out,)


def choose(weight: Tensor, max_filters: int, max_in_channels: int) -> FilterChoice:
    """Return the `max_filters` strongest filters and, among their input channels, the
    `max_in_channels` with the largest norm over those filters."""
    norms = filter_norms(weight).cpu()
    filters = strongest(norms, max_filters)
    per_channel = weight.detach().float().cpu()[filters].transpose(0, 1).flatten(1).norm(dim=1)
    return FilterChoice(filters, strongest(per_channel, max_in_channels), norms)


def _tiles(
    weight: Tensor, choice: FilterChoice, colour: bool, scale: str, tile_size: int
) -> Tensor:
    """Return RGB tiles (F, 3, t, t) of the chosen filters: colour, or averaged to grey."""
    shown = weight.detach().float().cpu()[choice.filters]  # (F, C, kh, kw)
    if not colour:
        shown = shown.mean(dim=1, keepdim=True)
    # Scaled per filter over all of its channels, before any split into grey tiles.
    scaled, _ = rescale(shown, FILTER_SCALES[scale], symmetric=True, unit="filter")
    factor = max(1, tile_size // max(shown.shape[-2:]))
    scaled = resize(scaled, (shown.shape[-2] * factor, shown.shape[-1] * factor))
    return scaled if scaled.shape[1] == 3 else scaled.expand(-1, 3, -1, -1)


def tile_pictures(
    weight: Tensor,
    choice: FilterChoice,
    values: Tensor,
    colour: bool,
    scale: str = "per_filter",
    tile_size: int = 36,
) -> list[tuple[str | None, Tensor]]:
    """Return (part, picture) pages of one tile per chosen filter, TILES_PER_ROW x TILE_ROWS
    a page, each numbered with its index over a bar of its `values` (0..1) beneath.

    The first page's part is None (the tag has no part); later pages are `33-64`...
    """
    tiles = _tiles(weight, choice, colour, scale, tile_size)
    gap = torch.ones(len(tiles), 3, 3, tiles.shape[-1])
    tiles = torch.cat([tiles, gap, bars(values, tiles.shape[-1])], dim=2)
    labels = [str(i) for i in choice.filters.tolist()]
    per_page = TILES_PER_ROW * TILE_ROWS
    pages: list[tuple[str | None, Tensor]] = []
    for start in range(0, len(labels), per_page):
        end = min(start + per_page, len(labels))
        grid = labelled_grid(tiles[start:end], labels[start:end], TILES_PER_ROW, gap=6)
        pages.append((None if start == 0 else range_part(start, end - 1), grid))
    return pages


def channel_picture(
    weight: Tensor, choice: FilterChoice, values: Tensor, numbers: Sequence[str], scale: str
) -> Tensor:
    """Return a grid of the chosen filters' kernels: a row per filter (its index on the
    left, a bar of its `values` (0..1) and its number on the right), a column per chosen
    input channel (its index on top)."""
    shown = weight.detach().float().cpu()[choice.filters][:, choice.channels]  # (F, C', kh, kw)
    # Per filter over all its input channels, not only those shown: a column's grey is
    # comparable along the row whichever channels were picked.
    whole = weight.detach().float().cpu()[choice.filters]
    if FILTER_SCALES[scale] == "per_tile":
        bound = whole.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    else:
        bound = weight.detach().float().abs().max().clamp_min(1e-12).cpu()
    scaled = (0.5 + 0.5 * shown / bound).clamp(0, 1)
    rows, columns, kh, kw = scaled.shape
    factor = max(1, (CELL[1] - 3) // max(kh, kw))
    tiles = resize(scaled.reshape(-1, 1, kh, kw), (kh * factor, kw * factor))
    tiles = (tiles * 255).round().to(torch.uint8).reshape(rows, columns, kh * factor, kw * factor)
    left = max(text_width(str(i)) for i in choice.filters.tolist()) + 8
    right = BAR_WIDTH + 6 + max(text_width(n) for n in numbers) + 4
    top = LINE_HEIGHT
    canvas = np.full((top + rows * CELL[1] + 2, left + columns * CELL[0] + right, 3), 255, np.uint8)
    th, tw = tiles.shape[-2:]
    for row in range(rows):
        for column in range(columns):
            y = top + row * CELL[1] + (CELL[1] - th) // 2
            x = left + column * CELL[0] + (CELL[0] - tw) // 2
            canvas[y : y + th, x : x + tw] = tiles[row, column].numpy()[..., None]
    bar = (bars(values, BAR_WIDTH, height=8) * 255).round().to(torch.uint8)
    bar_x = left + columns * CELL[0] + 4
    for row in range(rows):
        y = top + row * CELL[1] + (CELL[1] - 8) // 2
        canvas[y : y + 8, bar_x : bar_x + BAR_WIDTH] = bar[row].permute(1, 2, 0).numpy()
    image = Image.fromarray(canvas)
    draw, font = ImageDraw.Draw(image), text_font()
    for row, (index, number) in enumerate(zip(choice.filters.tolist(), numbers, strict=True)):
        middle = top + row * CELL[1] + CELL[1] / 2 + 1
        draw.text((left - 6, middle), str(index), fill="black", font=font, anchor="rm")
        draw.text((bar_x + BAR_WIDTH + 6, middle), number, fill="black", font=font, anchor="lm")
    for column, index in enumerate(choice.channels.tolist()):
        draw.text((left + (column + 0.5) * CELL[0], top - 2), str(index), fill="black",
                  font=font, anchor="ms")  # fmt: skip
    return _from_pil(image)


def number_text(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def filter_picture(
    weight: Tensor,
    name: str,
    colour: bool,
    scale: str = "per_filter",
    tile_size: int = 36,
    max_filters: int = 32,
    max_in_channels: int = 8,
    deep: str = "channels",
) -> Tensor:
    """Return the first picture of a conv layer's filters `weight` (out, in, kh, kw)
    (see FilterImages); `name` only names the layer in errors."""
    if scale not in FILTER_SCALES:
        raise ValueError(f"scale={scale!r} is not allowed: use one of {', '.join(FILTER_SCALES)}")
    if deep not in DEEP_MODES:
        raise ValueError(f"deep={deep!r} is not allowed: use one of {', '.join(DEEP_MODES)}")
    colour = colour and weight.shape[1] in (1, 3)
    choice = choose(weight, max_filters, max_in_channels)
    pages, _ = layer_pictures(weight, choice, None, colour, scale, tile_size, deep)
    return pages[0][1]


def layer_pictures(
    weight: Tensor,
    choice: FilterChoice,
    initial: Tensor | None,
    colour: bool,
    scale: str,
    tile_size: int,
    deep: str,
) -> tuple[list[tuple[str | None, Tensor]], list[str]]:
    """Return (part, picture) pages of the filters, or of their change since `initial`
    when given (parts `change`, `change/33-64`...), and each shown filter's number (its
    norm, or its relative change)."""
    if initial is None:
        shown, values = weight, choice.norms[choice.filters]
        numbers = [number_text(v) for v in values.tolist()]
    else:
        shown = weight.detach().float().cpu() - initial.float()
        values = filter_norms(shown)[choice.filters] / filter_norms(initial)[
            choice.filters
        ].clamp_min(1e-12)
        numbers = [f"{100 * v:.0f}%" for v in values.tolist()]
    relative = values / values.max().clamp_min(1e-12)
    if colour or deep == "mean":
        pages = tile_pictures(shown, choice, relative, colour, scale, tile_size)
    else:
        pages = [(None, channel_picture(shown, choice, relative, numbers, scale))]
    if initial is not None:
        pages = [("change" if part is None else f"change/{part}", image) for part, image in pages]
    return pages, numbers
