"""Grad-CAM: where in each fixed validation image the network looks for its predicted class.

The attribution is captum's `LayerGradCam` (Selvaraju et al., 2017), from PyTorch's own
interpretability library: it takes any module by reference, so it works on every layer
the callbacks find by name, in any architecture; tests check it against the formula.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from convnet.callbacks.base import Picture, PictureCallback, PictureContext, Pictures
from convnet.callbacks.layers import named_modules
from convnet.callbacks.render import as_rgb, colormap, fit_text, labelled_grid, resize
from convnet.callbacks.tags import class_part, picture_tag, split_pages, unique_parts
from convnet.checks import ConfigError, positive_int

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


def gradcam_pages(
    maps: Tensor,
    pixels: Tensor,
    probabilities: Tensor,
    labels: Sequence[int],
    names: Sequence[str],
    classes: Sequence[str],
    tile_size: int = 64,
    columns: int = 3,
    rows: int = 2,
) -> list[tuple[str, Tensor]]:
    """Return (part, picture) pages of `columns` x `rows` images, each beside its Grad-CAM
    map laid over it, over its true class and the predicted class with its probability.

    maps: (N, 1, H, W) >= 0; pixels: (N, c, H, W) in [0, 1]; labels: each image's class
    (-1: unknown), naming the pages (`classes_0-5`); names: each image's label.
    """
    maps = maps.detach().float().cpu()
    peak = maps.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    heat = colormap(resize(maps / peak, tile_size))
    images = as_rgb(resize(pixels.float().cpu(), tile_size))
    overlays = (1 - OVERLAY) * images + OVERLAY * heat
    gap = torch.ones(len(images), 3, tile_size, 2)
    pairs = torch.cat([images, gap, overlays], dim=3)  # (N, 3, t, 2t + 2)
    confidence, predicted = probabilities.detach().float().cpu().max(dim=1)
    width = pairs.shape[-1]
    captions = [
        f"{fit_text(name, width + 6)}\n{fit_text(classes[p], width - 40)} {c:.2f}"
        for name, p, c in zip(names, predicted.tolist(), confidence.tolist(), strict=True)
    ]
    chunks = split_pages(len(captions), columns * rows)
    parts = unique_parts([class_part(labels[chunk.start : chunk.stop]) for chunk in chunks])
    return [
        (part, labelled_grid(pairs[c.start : c.stop], captions[c.start : c.stop], columns, 8))
        for part, c in zip(parts, chunks, strict=True)
    ]


def gradcam_description(stage: str, layer: str, part: str) -> str:
    """Return the Markdown that explains one page of Grad-CAM maps."""
    return "\n\n".join(
        [
            f"**Grad-CAM at {stage}**, {part.replace('_', ' ')}: where in each fixed "
            f"validation image `{layer}` ({stage}'s output) holds the evidence for the "
            "class the network predicts (Selvaraju et al., 2017, by captum).",
            "Each pair: the image, then its map laid over it at "
            f"{OVERLAY:.0%}. Under the pair: the true class, then the predicted class and "
            "its softmax probability.",
            "Colours: viridis, dark purple for no evidence to yellow for the most; each map "
            "scaled from 0 to its own maximum, so maps are not comparable in strength.",
        ]
    )


class GradCAM(PictureCallback):
    """Grad-CAM maps of the fixed validation images, `<stage>/gradcam/classes_0-5`, six
    images a picture.

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
        tile_size: int = 64,
        every_n_epochs: int = 1,
        at_start: bool = True,
        network_attribute: str = "model",
    ) -> None:
        super().__init__(every_n_epochs, at_start, network_attribute)
        # Captum is imported where the first picture draws; an environment without it is
        # told so here, when the trainer is built, not after the epochs before that picture.
        if importlib.util.find_spec("captum") is None:
            raise ConfigError(
                "callbacks.gradcam needs the package captum, which is not installed: "
                "pip install 'captum>=0.7,<1' (convnet requires it; `pip install -e .` "
                "installs it), or turn the pictures off with callbacks.gradcam=null"
            )
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
        stage = context.stage_name(name)
        pages = gradcam_pages(
            maps, samples.pixels, probabilities, samples.labels.tolist(),
            samples.label_names(), samples.classes, self.tile_size,
        )  # fmt: skip
        return [
            Picture(
                picture_tag(stage, "gradcam", part),
                image,
                gradcam_description(stage, name, part),
                f"{stage} Grad-CAM {part} ({name})",
            )
            for part, image in pages
        ]
