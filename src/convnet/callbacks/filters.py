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

import lightning as L
import torch
from torch import Tensor, nn

from convnet.callbacks.base import Picture, PictureCallback, PictureContext, Pictures
from convnet.callbacks.filter_grid import (
    DEEP_MODES,
    FILTER_SCALES,
    TILE_ROWS,
    TILES_PER_ROW,
    FilterChoice,
    choose,
    layer_pictures,
)
from convnet.callbacks.layers import first_conv, named_modules, network_of
from convnet.callbacks.tags import picture_tag
from convnet.checks import positive_int


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
                pages, numbers = layer_pictures(
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
