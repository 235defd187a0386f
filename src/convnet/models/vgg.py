"""VGG networks (Simonyan & Zisserman, 2015): a list of widths and "M" pool markers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convnet.checks import fraction, sequence
from convnet.models.layers import (
    activation_layer,
    choose,
    conv_block,
    positive_int,
    to_pair,
)
from convnet.models.stages import StageInfo

# Width of the two hidden layers of the ImageNet classifier.
_HIDDEN_FEATURES = 4096
# Spatial size the ImageNet head pools to before its first Linear layer.
_IMAGENET_POOL = 7


def make_features(
    layers: Sequence[int | str],
    in_channels: int,
    batch_norm: bool,
    activation: str,
    kernel_initializer: str,
) -> nn.Sequential:
    """Return the conv/pool stack for a width list, indexed like torchvision's `features`."""
    modules: list[nn.Module] = []
    channels = in_channels
    for index, width in enumerate(layers):
        if width == "M":
            # (B, C, H, W) -> (B, C, H/2, W/2)
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        if isinstance(width, str):
            raise ValueError(
                f"layers[{index}]={width!r} is not allowed: use a positive int width or 'M' "
                "for a 2x2 max-pool."
            )
        positive_int(width, f"layers[{index}]")
        # Bias is kept even before batch norm so that torchvision's weights load unchanged.
        block = conv_block(
            channels,
            width,
            kernel_size=3,
            padding="same",
            use_bias=True,
            norm="batch" if batch_norm else "none",
            activation=activation,
            kernel_initializer=kernel_initializer,
        )
        # Flattened so indices read conv, [bn], act, ... as in torchvision.
        modules.extend(block)
        channels = width
    return nn.Sequential(*modules)


def _imagenet_head(
    width: int, num_classes: int, dropout: float, activation: str
) -> tuple[nn.Module, nn.Module]:
    pool = nn.AdaptiveAvgPool2d(_IMAGENET_POOL)
    classifier = nn.Sequential(
        nn.Linear(width * _IMAGENET_POOL * _IMAGENET_POOL, _HIDDEN_FEATURES),
        activation_layer(activation),
        nn.Dropout(p=dropout),
        nn.Linear(_HIDDEN_FEATURES, _HIDDEN_FEATURES),
        activation_layer(activation),
        nn.Dropout(p=dropout),
        nn.Linear(_HIDDEN_FEATURES, num_classes),
    )
    return pool, classifier


def _cifar_head(
    width: int, num_classes: int, dropout: float, activation: str
) -> tuple[nn.Module, nn.Module]:
    # Global average pooling then one Linear layer: the usual head of CIFAR VGGs.
    dropout_layers = [nn.Dropout(p=dropout)] if dropout > 0 else []
    return nn.AdaptiveAvgPool2d(1), nn.Sequential(*dropout_layers, nn.Linear(width, num_classes))


def feature_stages(features: nn.Sequential, prefix: str = "features") -> list[StageInfo]:
    """Return the stages of a VGG `features` stack: the convolutions between two pools.

    A stage's output is its last module before the pool (the activation of its last conv),
    at a total stride of 2 ** (pools before it).
    """
    found: list[StageInfo] = []
    convs: list[tuple[str, nn.Conv2d]] = []
    reduction = 1
    # A final pool that is not there closes the last stage.
    for index, module in [*enumerate(features), (len(features), nn.MaxPool2d(2))]:
        if isinstance(module, nn.MaxPool2d):
            if convs:
                name, channels = f"stage{len(found) + 1}", convs[-1][1].out_channels
                last = f"{prefix}.{index - 1}"
                found.append(StageInfo(name, last, convs[0][0], channels, reduction))
            convs, reduction = [], reduction * 2
        elif isinstance(module, nn.Conv2d):
            convs.append((f"{prefix}.{index}", module))
    return found


HEADS = {"imagenet": _imagenet_head, "cifar": _cifar_head}


class VGG(nn.Module):
    """A VGG network with torchvision's named parts: `features`, `avgpool`, `classifier`.

    layers: widths of the 3x3 "same" convolutions and "M" for 2x2 max-pools, in order.
    image_size: [height, width] (or one int) of the input images, for the size check that
        builders run (`check_network`); the network itself takes any size its pools allow.
    head: "cifar" (global average pool + Linear) or "imagenet" (pool to 7x7 + three Linear
        layers, torchvision's classifier, so its state_dict loads with strict=True).
    dropout: probability before each hidden Linear layer (imagenet) or before the Linear
        layer (cifar, left out when 0).
    """

    def __init__(
        self,
        layers: Sequence[int | str],
        in_channels: int,
        num_classes: int,
        image_size: int | Sequence[int],
        batch_norm: bool = False,
        head: str = "cifar",
        dropout: float = 0.5,
        activation: str = "relu",
        kernel_initializer: str = "kaiming_normal",
    ) -> None:
        super().__init__()
        make_head = choose(HEADS, "head", head)
        positive_int(num_classes, "num_classes")
        layers = sequence(layers, "layers", "[64, M, 128, M]")
        widths = [width for width in layers if width != "M"]
        if not widths:
            raise ValueError(f"layers={list(layers)!r} has no convolution: add at least one width.")
        dropout = fraction(dropout, "dropout")
        self.in_channels = positive_int(in_channels, "in_channels")
        self.image_size = to_pair(image_size, "image_size")
        self.features = make_features(
            layers, in_channels, batch_norm, activation, kernel_initializer
        )
        self.avgpool, self.classifier = make_head(widths[-1], num_classes, dropout, activation)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                # torchvision's VGG initialisation for the classifier.
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)
        self.feature_info = feature_stages(self.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits (B, num_classes) for images (B, in_channels, H, W)."""
        x = self.features(x)  # (B, C, H, W) -> (B, widths[-1], H / 2**pools, W / 2**pools)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)
