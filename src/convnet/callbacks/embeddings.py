"""Penultimate-layer features of the fixed validation images in TensorBoard's projector."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from tensorboard.plugins.projector import visualize_embeddings
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter

from convnet.callbacks.base import PictureCallback, PictureContext
from convnet.callbacks.layers import classifier_layer, named_modules
from convnet.checks import positive_int

TAG = "embeddings"
SPRITE_SIZE = 64  # pixels: larger images are shrunk in the projector's sprite sheet


def penultimate_features(
    network: nn.Module, inputs: Tensor, layer: str | None = None
) -> tuple[Tensor, Tensor]:
    """Return (features (N, D), logits (N, classes)) for `inputs`.

    layer: null takes the input of the layer making the class scores (what the classifier
        sees, see `classifier_layer`); a module name takes that module's output. Feature
        maps are globally average-pooled.
    """
    name = layer if layer is not None else classifier_layer(network)
    (module,) = named_modules(network, [name], "callbacks.embeddings.layer").values()
    kept: list[Tensor] = []

    def keep_input(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        kept.append(args[0])

    def keep_output(module: nn.Module, args: object, output: Tensor) -> None:
        kept.append(output)

    handle = (
        module.register_forward_pre_hook(keep_input)
        if layer is None
        else module.register_forward_hook(keep_output)
    )
    try:
        with torch.no_grad():
            logits = network(inputs)
    finally:
        handle.remove()
    features = kept[0].float()
    if features.dim() == 4:
        features = features.mean(dim=(2, 3))  # (N, C, H, W) -> (N, C)
    return features.flatten(1).cpu(), logits.float().cpu()


def tensor_name(step: int, latest: bool) -> str:
    """Return the projector's name of the embeddings logged at `step`."""
    return f"{TAG} latest (step {step})" if latest else f"{TAG} step {step:05d}"


def latest_first(writer: SummaryWriter) -> None:
    """Rename the writer's embeddings so that the projector opens the newest by default.

    The projector lists a run's tensors sorted by name and opens the first; the names
    SummaryWriter gives (`embeddings:00936`) put the oldest first. Its config is rewritten
    with the newest named `embeddings latest (step N)`, which sorts before `embeddings step`.
    """
    config = writer._projector_config  # what add_embedding keeps and writes, in call order
    for index, embedding in enumerate(config.embeddings):
        step = int(embedding.tensor_path.split("/")[0])  # add_embedding's <step>/<tag>/
        embedding.tensor_name = tensor_name(step, latest=index == len(config.embeddings) - 1)
    visualize_embeddings(writer.get_logdir(), config)


class Embeddings(PictureCallback):
    """Penultimate features of `per_class` fixed validation images per class in the
    projector, with the images as sprites and true and predicted class as labels.

    Written after every N-th epoch and the last (not at the start by default: the
    untrained network's features say little); the projector opens the newest. The projector
    is TensorBoard's: with no TensorBoard logger nothing is computed.
    """

    name = "embeddings"
    logger_kinds = (TensorBoardLogger,)

    def __init__(
        self,
        layer: str | None = None,
        per_class: int = 20,
        seed: int = 0,
        every_n_epochs: int = 4,
        at_start: bool = False,
        network_attribute: str = "model",
    ) -> None:
        super().__init__(every_n_epochs, at_start, network_attribute)
        self.layer = layer
        self.per_class = positive_int(per_class, "callbacks.embeddings.per_class")
        self.seed = seed

    def write(self, loggers: list[Logger], context: PictureContext, step: int) -> None:
        samples = context.samples(self.per_class, self.seed)
        features, logits = penultimate_features(context.network, samples.inputs, self.layer)
        predicted = [samples.classes[i] for i in logits.argmax(dim=1).tolist()]
        metadata = [
            [true, pred] for true, pred in zip(samples.label_names(), predicted, strict=True)
        ]
        # The projector reads one sprite sheet of at most 8192 x 8192 pixels.
        sprites = samples.pixels
        if max(sprites.shape[-2:]) > SPRITE_SIZE:
            size = (SPRITE_SIZE, SPRITE_SIZE)
            sprites = F.interpolate(sprites, size=size, mode="bilinear", antialias=True)
        for logger in loggers:
            writer = logger.experiment
            writer.add_embedding(
                features,
                metadata=metadata,
                metadata_header=["class", "predicted"],
                label_img=sprites,
                global_step=step,
                tag=TAG,
            )
            latest_first(writer)
