"""Grad-CAM: where in each fixed validation image the network looks for its predicted class.

The attribution is captum's `LayerGradCam` (Selvaraju et al., 2017), from PyTorch's own
interpretability library: it takes any module by reference, so it works on every layer
the callbacks find by name, in any architecture; tests check it against the formula.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from convnet.callbacks.base import Picture, PictureCallback, PictureContext, Pictures
from convnet.callbacks.layers import named_modules
from convnet.callbacks.render import as_rgb, colormap, image_grid, label_tiles, resize
from convnet.callbacks.tags import picture_tag
from convnet.checks import positive_int

OVERLAY = 0.5  # weight of the heat map over the image


def gradcam(network: nn.Module, layer: nn.Module, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """Return Grad-CAM maps (N, 1, H, W) >= 0 at the input's size for the predicted
    classes, and the softmax probabilities (N, classes)."""
    from captum.attr import LayerAttribution, LayerGradCam  # imports matplotlib: load late

    with torch.no_grad():
        probabilities = network(inputs).float().softmax(dim=1)
    predicted = probabilities.argmax(dim=1)
    maps = LayerGradCam(network, layer).attribute(
        inputs.clone(), target=predicted, relu_attributions=True
    )
    maps = LayerAttribution.interpolate(maps.detach().float(), inputs.shape[-2:], "bilinear")
    return maps.clamp_min(0), probabilities


def gradcam_picture(
    maps: Tensor,
    pixels: Tensor,
    probabilities: Tensor,
    names: Sequence[str],
    classes: Sequence[str],
    layer: str,
    tile_size: int = 80,
) -> Tensor:
    """Return a picture of each image beside its Grad-CAM map laid over it.

    maps: (N, 1, H, W) >= 0; pixels: (N, c, H, W) in [0, 1]; names: each image's label.
    """
    maps = maps.detach().float().cpu()
    peak = maps.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    heat = colormap(resize(maps / peak, tile_size))
    images = as_rgb(resize(pixels.float().cpu(), tile_size))
    overlays = (1 - OVERLAY) * images + OVERLAY * heat
    confidence, predicted = probabilities.detach().float().cpu().max(dim=1)
    tiles = torch.stack([images, overlays], dim=1).flatten(0, 1)  # image, overlay, image, ...
    labels = []
    for name, p, c in zip(names, predicted.tolist(), confidence.tolist(), strict=True):
        labels += [name, f"{classes[p]} {c:.2f}"]
    caption = (
        f"Grad-CAM at {layer} for the predicted class: each image (its true class), then "
        f"its map laid over it at {OVERLAY:.0%} (the predicted class and its probability); "
        "viridis, each map scaled from 0 to its own max"
    )
    return image_grid(label_tiles(tiles, labels), nrow=10, scale=None, caption=caption)


class GradCAM(PictureCallback):
    """Grad-CAM maps of the fixed validation images, `gradcam/<layer>`.

    layer: module name of the layer to attribute to; null for the last stage's output
        (the last convolutional features, the usual choice).
    per_class, max_images, seed: the fixed validation images, as in FeatureMaps.
    """

    name = "gradcam"

    def __init__(
        self,
        layer: str | None = None,
        per_class: int = 1,
        max_images: int = 20,
        seed: int = 0,
        tile_size: int = 80,
        every_n_epochs: int = 1,
        at_start: bool = True,
        network_attribute: str = "model",
    ) -> None:
        super().__init__(every_n_epochs, at_start, network_attribute)
        self.layer = layer
        self.per_class = positive_int(per_class, "callbacks.gradcam.per_class")
        self.max_images = positive_int(max_images, "callbacks.gradcam.max_images")
        self.seed = seed
        self.tile_size = positive_int(tile_size, "callbacks.gradcam.tile_size")

    def pictures(self, context: PictureContext) -> Pictures:
        name = self.layer if self.layer is not None else context.stages()[-1].output
        (layer,) = named_modules(context.network, [name], "callbacks.gradcam.layer").values()
        samples = context.samples(self.per_class, self.seed).spread(self.max_images)
        maps, probabilities = gradcam(context.network, layer, samples.inputs)
        picture = gradcam_picture(
            maps,
            samples.pixels,
            probabilities,
            samples.label_names(),
            samples.classes,
            name,
            self.tile_size,
        )
        return [
            Picture(
                picture_tag(context.stage_name(name), "gradcam"), picture, f"Grad-CAM at {name}"
            )
        ]
