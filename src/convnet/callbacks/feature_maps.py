"""Feature maps: what chosen layers output for the fixed validation images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from convnet.callbacks.base import Picture, PictureCallback, PictureContext, Pictures
from convnet.callbacks.layers import named_modules
from convnet.callbacks.render import (
    as_rgb,
    check_scale,
    colormap,
    image_grid,
    label_tiles,
    rescale,
    resize,
)
from convnet.callbacks.tags import picture_tag
from convnet.checks import positive_int
from convnet.models.trace import capture_outputs


def top_channels(activations: Tensor, k: int) -> Tensor:
    """Return (N, k) indices of each image's k channels with the highest mean activation."""
    means = activations.float().mean(dim=(2, 3))  # (N, C, h, w) -> (N, C)
    return means.topk(min(k, means.shape[1]), dim=1).indices


def feature_map_picture(
    activations: Tensor,
    pixels: Tensor,
    names: Sequence[str],
    layer: str,
    top_k: int = 8,
    scale: str = "per_tile",
    tile_size: int = 48,
) -> Tensor:
    """Return a picture with one row per image: the image, then its top-k channels.

    activations: (N, C, h, w) outputs of `layer`; pixels: (N, c, H, W) images in [0, 1];
    names: a label for each image. Each channel is shown with viridis, scaled per `scale`
    ("per_tile": each map from its own min to max; "shared": one range for the picture).
    """
    check_scale(scale)
    if activations.dim() != 4:
        raise ValueError(
            f"{layer} outputs shape {tuple(activations.shape)}, not (N, C, H, W) feature maps; "
            "name a convolutional layer or stage."
        )
    activations = activations.detach().float().cpu()
    channels = top_channels(activations, top_k)  # (N, k)
    maps = activations.gather(1, channels[:, :, None, None].expand(-1, -1, *activations.shape[2:]))
    n, k = channels.shape
    scaled, stated = rescale(maps.reshape(n * k, 1, *maps.shape[2:]), scale, unit="map")
    # Coloured at the maps' own size, then enlarged: nearest-neighbour keeps the colours.
    coloured = resize(colormap(scaled), tile_size).reshape(n, k, 3, tile_size, tile_size)
    images = as_rgb(resize(pixels.float().cpu(), tile_size))[:, None]  # (N, 1, 3, t, t)
    tiles = torch.cat([images, coloured], dim=1).flatten(0, 1)  # (N * (k + 1), 3, t, t)
    labels = [
        text
        for name, row in zip(names, channels.tolist(), strict=True)
        for text in [name, *(f"ch {c}" for c in row)]
    ]
    _, c, h, w = activations.shape
    caption = (
        f"{layer}: output {c}x{h}x{w}; each row an image and its {k} channels of highest "
        f"mean activation; viridis, {stated}"
    )
    return image_grid(label_tiles(tiles, labels), nrow=k + 1, scale=None, caption=caption)


class FeatureMaps(PictureCallback):
    """Feature maps of the fixed validation images, `feature_maps/<layer>`.

    layers: module names whose outputs to draw; null for the output of every stage.
    per_class: fixed validation images per class (chosen by `seed`, the same every run).
    max_images: at most this many of them, evenly spread over the classes (100 classes
        would otherwise give 100 rows).
    top_k: channels shown per image, those of highest mean activation.
    scale: "per_tile" or "shared" (see `feature_map_picture`).
    """

    name = "feature_maps"

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        per_class: int = 1,
        max_images: int = 20,
        seed: int = 0,
        top_k: int = 8,
        scale: str = "per_tile",
        tile_size: int = 48,
        every_n_epochs: int = 1,
        at_start: bool = True,
        network_attribute: str = "model",
    ) -> None:
        super().__init__(every_n_epochs, at_start, network_attribute)
        self.layers = list(layers) if layers is not None else None
        self.per_class = positive_int(per_class, "callbacks.feature_maps.per_class")
        self.max_images = positive_int(max_images, "callbacks.feature_maps.max_images")
        self.seed = seed
        self.top_k = positive_int(top_k, "callbacks.feature_maps.top_k")
        self.scale = check_scale(scale, "callbacks.feature_maps.scale")
        self.tile_size = positive_int(tile_size, "callbacks.feature_maps.tile_size")

    def layer_names(self, context: PictureContext) -> list[str]:
        """Return the names of the layers to draw, the configured ones or each stage's output."""
        return self.layers if self.layers is not None else [s.output for s in context.stages()]

    def pictures(self, context: PictureContext) -> Pictures:
        names = self.layer_names(context)
        layers = named_modules(context.network, names, "callbacks.feature_maps.layers")
        samples = context.samples(self.per_class, self.seed).spread(self.max_images)
        with torch.no_grad():
            outputs = capture_outputs(context.network, layers, samples.inputs, stop_early=True)
        return [
            Picture(
                picture_tag(context.stage_name(name), "feature_maps"),
                feature_map_picture(
                    outputs[name],
                    samples.pixels,
                    samples.label_names(),
                    name,
                    self.top_k,
                    self.scale,
                    self.tile_size,
                ),
                f"feature maps of {name}",
            )
            for name in names
        ]
