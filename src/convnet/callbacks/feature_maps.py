"""Feature maps: what chosen layers output for the fixed validation images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from convnet.callbacks.base import Picture, PictureCallback, PictureContext, Pictures
from convnet.callbacks.layers import named_modules
from convnet.callbacks.render import (
    MAX_SIZE,
    as_rgb,
    check_scale,
    colormap,
    fit_text,
    labelled_grid,
    rescale,
    resize,
    text_width,
)
from convnet.callbacks.tags import class_part, picture_tag, split_pages, unique_parts
from convnet.checks import positive_int
from convnet.models.trace import capture_outputs


def top_channels(activations: Tensor, k: int) -> Tensor:
    """Return (N, k) indices of each image's k channels with the highest mean activation."""
    means = activations.float().mean(dim=(2, 3))  # (N, C, h, w) -> (N, C)
    return means.topk(min(k, means.shape[1]), dim=1).indices


NAME_WIDTH = 110  # pixels at most for the class name under each row's image


def feature_map_pages(
    activations: Tensor,
    pixels: Tensor,
    labels: Sequence[int],
    names: Sequence[str],
    top_k: int = 8,
    scale: str = "per_tile",
    tile_size: int = 42,
    per_page: int = 4,
    layer: str = "",
) -> tuple[list[tuple[str, Tensor]], str]:
    """Return (part, picture) pages of `per_page` images each, a row per image: the image
    with its class name under it, then its top-k channels with their indices; and the
    sentence stating the colour scale.

    activations: (N, C, h, w) outputs of `layer`; pixels: (N, c, H, W) images in [0, 1];
    labels: each image's class (-1: unknown), naming the pages (`classes_0-3`); names: a
    label for each image. Each channel is shown with viridis, scaled per `scale`
    ("per_tile": each map from its own min to max; "shared": one range for the picture).
    """
    check_scale(scale)
    if activations.dim() != 4:
        raise ValueError(
            f"{layer} outputs shape {tuple(activations.shape)}, not (N, C, H, W) feature maps; "
            "name a convolutional layer or stage."
        )
    activations = activations.detach().float().cpu()
    name_width = min(NAME_WIDTH, max(tile_size, *(text_width(n) for n in names)))
    cell = max(tile_size, text_width(str(activations.shape[1] - 1))) + 6
    top_k = max(1, min(top_k, (MAX_SIZE[0] - name_width - 6) // cell))
    channels = top_channels(activations, top_k)  # (N, k)
    maps = activations.gather(1, channels[:, :, None, None].expand(-1, -1, *activations.shape[2:]))
    n, k = channels.shape
    scaled, stated = rescale(maps.reshape(n * k, 1, *maps.shape[2:]), scale, unit="map")
    # Coloured at the maps' own size, then enlarged: nearest-neighbour keeps the colours.
    coloured = resize(colormap(scaled), tile_size)  # (N * k, 3, t, t)
    images = as_rgb(resize(pixels.float().cpu(), tile_size))  # (N, 3, t, t)
    shown_names = [fit_text(name, name_width) for name in names]
    channel_labels = [str(c) for row in channels.tolist() for c in row]
    chunks = split_pages(n, per_page)
    parts = unique_parts([class_part(labels[chunk.start : chunk.stop]) for chunk in chunks])
    found = []
    for part, chunk in zip(parts, chunks, strict=True):
        start, end = chunk.start, chunk.stop
        left = labelled_grid(images[start:end], shown_names[start:end], 1, cell_width=name_width)
        right = labelled_grid(
            coloured[start * k : end * k], channel_labels[start * k : end * k], k,
            cell_width=cell - 6,
        )  # fmt: skip
        found.append((part, torch.cat([left, right], dim=2)))
    return found, stated


def feature_map_description(
    stage: str, layer: str, shape: Sequence[int], part: str, top_k: int, stated: str
) -> str:
    """Return the Markdown that explains one page of feature maps."""
    channels, height, width = shape
    return "\n\n".join(
        [
            f"**{stage} feature maps**, {part.replace('_', ' ')}: what `{layer}` "
            f"({stage}'s output, {channels} channels of {height}x{width}) computes for "
            "fixed validation images, the same in every run and every epoch.",
            "A row per image: the image with its class under it, then the channels with "
            f"the highest mean activation for that image (up to {top_k}), strongest first, "
            "each numbered by its channel index.",
            f"Colours: viridis, dark purple low to yellow high; {stated}.",
        ]
    )


class FeatureMaps(PictureCallback):
    """Feature maps of the fixed validation images, `<stage>/feature_maps/classes_0-3`.

    layers: module names whose outputs to draw; null for the output of every stage.
    per_class: fixed validation images per class (chosen by `seed`, the same every run).
    max_images: at most this many of them, evenly spread over the classes (100 classes
        would otherwise give 100 rows).
    top_k: channels shown per image, those of highest mean activation (fewer when they
        would not fit TensorBoard's card).
    scale: "per_tile" or "shared" (see `feature_map_pages`).
    images_per_picture: rows of a picture; the images are split over several tags,
        `<stage>/feature_maps/classes_0-3`, `.../classes_4-7`, ...
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
        tile_size: int = 42,
        images_per_picture: int = 4,
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
        self.images_per_picture = positive_int(
            images_per_picture, "callbacks.feature_maps.images_per_picture"
        )

    def layer_names(self, context: PictureContext) -> list[str]:
        """Return the names of the layers to draw, the configured ones or each stage's output."""
        return self.layers if self.layers is not None else [s.output for s in context.stages()]

    def pictures(self, context: PictureContext) -> Pictures:
        names = self.layer_names(context)
        layers = named_modules(context.network, names, "callbacks.feature_maps.layers")
        samples = context.samples(self.per_class, self.seed).spread(self.max_images)
        with torch.no_grad():
            outputs = capture_outputs(context.network, layers, samples.inputs, stop_early=True)
        pictures = []
        for name in names:
            stage = context.stage_name(name)
            pages, stated = feature_map_pages(
                outputs[name], samples.pixels, samples.labels.tolist(), samples.label_names(),
                self.top_k, self.scale, self.tile_size, self.images_per_picture, name,
            )  # fmt: skip
            for part, image in pages:
                describe = feature_map_description(
                    stage, name, outputs[name].shape[1:], part, self.top_k, stated
                )
                title = f"{stage} feature maps {part} ({name})"
                pictures.append(
                    Picture(picture_tag(stage, "feature_maps", part), image, describe, title)
                )
        return pictures
