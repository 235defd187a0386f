"""Conv filters as pictures: the first layer's as colour tiles, deeper layers' as grids."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from convnet.callbacks.base import Picture, PictureCallback, PictureContext, Pictures
from convnet.callbacks.layers import first_conv, named_modules
from convnet.callbacks.render import image_grid, rescale
from convnet.callbacks.tags import picture_tag
from convnet.checks import positive_int

FILTER_SCALES = {"per_filter": "per_tile", "shared": "shared"}
DEEP_MODES = ("channels", "mean")


def filter_picture(
    weight: Tensor,
    name: str,
    colour: bool,
    scale: str = "per_filter",
    tile_size: int = 24,
    max_filters: int = 64,
    max_in_channels: int = 16,
    deep: str = "channels",
) -> Tensor:
    """Return a picture of a conv layer's filters `weight` (out, in, kh, kw).

    colour: draw each filter as one tile with its 3 input channels as RGB (or its one
        channel as grey); otherwise as grey tiles, per `deep`: "channels" gives a row per
        filter and a column per input channel (the first `max_in_channels`), "mean" one
        tile per filter, averaged over its input channels.
    scale: "per_filter" (each filter to +-its own max |weight|) or "shared" (one range
        for the layer); 0 is always mid-grey.
    tile_size: pixels per kernel tile, reached by a whole nearest-neighbour factor.
    max_filters: filters drawn (the first ones).
    """
    if scale not in FILTER_SCALES:
        raise ValueError(f"scale={scale!r} is not allowed: use one of {', '.join(FILTER_SCALES)}")
    if deep not in DEEP_MODES:
        raise ValueError(f"deep={deep!r} is not allowed: use one of {', '.join(DEEP_MODES)}")
    out_channels, in_channels, kh, kw = weight.shape
    shown = weight.detach().float().cpu()[:max_filters]  # (F, C, kh, kw)
    colour = colour and in_channels in (1, 3)
    if not colour and deep == "mean":
        shown = shown.mean(dim=1, keepdim=True)
    elif not colour:
        shown = shown[:, :max_in_channels]
    # Scaled per filter over all of its channels, before any split into grey tiles.
    scaled, stated = rescale(shown, FILTER_SCALES[scale], symmetric=True, unit="filter")
    if colour:
        tiles, nrow, layout = scaled, 8, "RGB" if in_channels == 3 else "grey"
    elif deep == "mean":
        tiles, nrow, layout = scaled, 8, "mean over input channels"
    else:
        tiles, nrow = scaled.reshape(-1, 1, kh, kw), scaled.shape[1]
        layout = f"row = filter, column = input channel (first {nrow})"
    count = f"(first {shown.shape[0]} shown)" if shown.shape[0] < out_channels else ""
    caption = f"{name}: {out_channels} filters {in_channels}x{kh}x{kw} {count}\n{layout}; {stated}"
    upscale = max(1, tile_size // max(kh, kw))
    return image_grid(tiles, nrow=nrow, scale=None, upscale=upscale, caption=caption)


class FilterImages(PictureCallback):
    """Pictures of conv filters, `filters/<layer>`, at the start and every N epochs.

    layers: module names of the Conv2d layers to draw; null for the first conv of the
        network and of every stage. The network's first conv is drawn in colour.
    max_filters: filters drawn of the first conv; max_deep_filters: of deeper ones.
    Other arguments as in `filter_picture`.
    """

    name = "filters"

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        scale: str = "per_filter",
        tile_size: int = 24,
        max_filters: int = 64,
        max_deep_filters: int = 16,
        max_in_channels: int = 16,
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

    def layer_names(self, context: PictureContext) -> list[str]:
        """Return the names of the conv layers to draw, the configured ones or the default."""
        if self.layers is not None:
            return self.layers
        names = [first_conv(context.network), *(s.first_conv for s in context.stages())]
        return list(dict.fromkeys(names))  # in order, without repeats

    def pictures(self, context: PictureContext) -> Pictures:
        names = self.layer_names(context)
        modules = named_modules(context.network, names, "callbacks.filters.layers")
        first = first_conv(context.network)
        pictures = []
        for name, module in modules.items():
            if not isinstance(module, nn.Conv2d):
                raise ValueError(
                    f"callbacks.filters.layers: {name} is a {type(module).__name__}, not a "
                    "Conv2d; name convolution layers."
                )
            with torch.no_grad():
                image = filter_picture(
                    module.weight,
                    name,
                    colour=name == first,
                    scale=self.scale,
                    tile_size=self.tile_size,
                    max_filters=self.max_filters if name == first else self.max_deep_filters,
                    max_in_channels=self.max_in_channels,
                    deep=self.deep,
                )
            stage = context.stage_name(name)
            pictures.append(
                Picture(
                    picture_tag(stage, "filters"),
                    image,
                    f"filters of {name}",
                    f"{stage} filters ({name})",
                )
            )
        return pictures
