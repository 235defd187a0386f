"""Conv filters as pictures: the strongest filters by norm, numbered, and what training
changed in them since the start.

The first conv is drawn as colour tiles (its input channels as RGB); deeper convs either
as a grid of a row per filter and a column per input channel, both the strongest ones
(`deep: channels`), or one grey tile per filter averaged over its input channels
(`deep: mean`). Filters are ranked by L2 norm, so the default shows the filters that
carry the most weight rather than the first few.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn

from convnet.callbacks.base import Picture, PictureCallback, PictureContext, Pictures
from convnet.callbacks.layers import first_conv, named_modules, network_of
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
from convnet.callbacks.tags import picture_tag, range_part
from convnet.checks import positive_int

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


def _number(value: float) -> str:
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
    pages, _ = _layer_pictures(weight, choice, None, colour, scale, tile_size, deep)
    return pages[0][1]


def _layer_pictures(
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
        numbers = [_number(v) for v in values.tolist()]
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


class FilterImages(PictureCallback):
    """Pictures of conv filters, `<stage>/filters` and `<stage>/filters/change`.

    layers: module names of the Conv2d layers to draw; null for the first conv of the
        network (the stem's, or stage1's) and of every stage. The network's first conv is
        drawn in colour when it has 1 or 3 input channels.
    scale: "per_filter" (each filter to +-its own max |weight|) or "shared" (one range
        for the layer); 0 is always mid-grey.
    deep: deeper convs as "channels" (a row per filter, a column per input channel) or
        "mean" (one tile per filter, averaged over its input channels).
    tile_size: pixels per kernel of tiles (whole nearest-neighbour factor).
    max_filters: filters drawn of the first conv (32 a picture, more go to further tags);
        max_deep_filters and max_in_channels: rows and columns of the channels grid (or
        tiles of the mean view). Filters are the strongest by L2 norm, strongest first.

    The change picture shows each drawn filter minus its weights when this fit started,
    the same filters in the same places; it is drawn once the weights have changed.
    """

    name = "filters"

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        scale: str = "per_filter",
        tile_size: int = 36,
        max_filters: int = 32,
        max_deep_filters: int = 8,
        max_in_channels: int = 8,
        deep: str = "channels",
        every_n_epochs: int = 1,
        at_start: bool = True,
        network_attribute: str = "model",
    ) -> None:
        super().__init__(every_n_epochs, at_start, network_attribute)
        for key, value, allowed in (("scale", scale, FILTER_SCALES), ("deep", deep, DEEP_MODES)):
            if value not in allowed:
                raise ValueError(
                    f"callbacks.filters.{key}={value!r} is not allowed: use one of "
                    f"{', '.join(allowed)}."
                )
        self.layers = list(layers) if layers is not None else None
        self.scale = scale
        self.deep = deep
        self.tile_size = positive_int(tile_size, "callbacks.filters.tile_size")
        self.max_filters = positive_int(max_filters, "callbacks.filters.max_filters")
        self.max_deep_filters = positive_int(max_deep_filters, "callbacks.filters.max_deep_filters")
        self.max_in_channels = positive_int(max_in_channels, "callbacks.filters.max_in_channels")
        self.initial: dict[str, Tensor] = {}  # weights when the fit started, by layer
        self.initial_step = 0

    def layer_names(self, context: PictureContext) -> list[str]:
        """Return the names of the conv layers to draw, the configured ones or the default."""
        if self.layers is not None:
            return self.layers
        names = [first_conv(context.network), *(s.first_conv for s in context.stages())]
        return list(dict.fromkeys(names))  # in order, without repeats

    def convs(self, context: PictureContext) -> dict[str, nn.Conv2d]:
        """Return the conv layers to draw by name, refusing modules that are no Conv2d."""
        modules = named_modules(
            context.network, self.layer_names(context), "callbacks.filters.layers"
        )
        for name, module in modules.items():
            if not isinstance(module, nn.Conv2d):
                raise ValueError(
                    f"callbacks.filters.layers: {name} is a {type(module).__name__}, not a "
                    "Conv2d; name convolution layers."
                )
        return modules

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        network = network_of(pl_module, self.network_attribute)
        context = PictureContext(network, trainer.datamodule, pl_module.device)
        self.initial_step = trainer.global_step
        with torch.no_grad():
            self.initial = {
                name: conv.weight.detach().float().cpu().clone()
                for name, conv in self.convs(context).items()
            }
        super().on_train_start(trainer, pl_module)

    def pictures(self, context: PictureContext) -> Pictures:
        first = first_conv(context.network)
        pictures = []
        for name, module in self.convs(context).items():
            weight = module.weight.detach().float().cpu()
            colour = name == first and weight.shape[1] in (1, 3)
            wide = colour or self.deep == "mean"
            count = self.max_filters if name == first else self.max_deep_filters
            if name != first and self.deep == "mean":
                count = max(count, TILES_PER_ROW * TILE_ROWS)
            choice = choose(weight, count, self.max_in_channels)
            stage = context.stage_name(name)
            initial = self.initial.get(name)
            changed = initial is not None and not torch.equal(initial, weight)
            for before in (None, initial) if changed else (None,):
                pages, numbers = _layer_pictures(
                    weight, choice, before, colour, self.scale, self.tile_size, self.deep
                )
                since = None if before is None else self.initial_step
                describe = filter_description(
                    stage, name, weight, choice, colour, wide, self.scale, since, numbers
                )
                for part, image in pages:
                    title = f"{stage} filters{'' if part is None else ' ' + part} ({name})"
                    pictures.append(
                        Picture(picture_tag(stage, "filters", part), image, describe, title)
                    )
        return pictures

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.initial = {}
        super().teardown(trainer, pl_module, stage)


def filter_description(
    stage: str,
    name: str,
    weight: Tensor,
    choice: FilterChoice,
    colour: bool,
    tiles: bool,
    scale: str,
    since: int | None,
    numbers: Sequence[str],
) -> str:
    """Return the Markdown that explains one filter picture; `numbers` are the shown
    filters' norms (or changes), listed for the tile views, which have no room for them."""
    out, inputs, kh, kw = weight.shape
    shown = len(choice.filters)
    change = since is not None
    what = (
        f"**What training changed in {stage}'s filters**: each filter now minus its weights "
        f"at step {since}, when this fit started; the same filters in the same places as "
        f"`{stage}/filters`."
        if change
        else f"**{stage} filters**: the {shown} strongest of the {out} filters of `{name}` "
        f"({inputs} input channels, {kh}x{kw} kernels), by L2 norm ‖w‖₂, strongest first."
    )
    value = (
        "the relative change ‖w - w₀‖ / ‖w₀‖ (the bar: against the largest shown)"
        if change
        else "its norm ‖w‖₂ (the bar: against the largest shown)"
    )
    if tiles:
        kind = (
            "its input channels as red, green and blue"
            if colour and inputs == 3
            else "grey"
            if colour
            else f"averaged over its {inputs} input channels, in grey"
        )
        layout = (
            f"Each tile is one filter, {kind}; the number under it is the filter's index "
            f"(its output channel), the bar under the tile {value}."
        )
    else:
        layout = (
            "A row per filter, numbered on the left by its index (output channel), with "
            f"{value} on the right. A column per input channel: the {len(choice.channels)} "
            f"of {inputs} with the most weight in these filters, numbered on top. Each tile "
            "is one filter's kernel on one input channel, in grey."
        )
    scaled = (
        "each filter scaled to ± its own largest |value|"
        if FILTER_SCALES[scale] == "per_tile"
        else "one scale, ± the layer's largest |value|"
    )
    colours = f"Colours: 0 is mid-grey, positive lighter, negative darker; {scaled}."
    parts = [what, layout, colours]
    if tiles:
        listing = ", ".join(
            f"{i}: {n}" for i, n in zip(choice.filters.tolist(), numbers, strict=True)
        )
        parts.append(f"{'Changes' if change else 'Norms'} (index: value): {listing}.")
    return "\n\n".join(parts)
