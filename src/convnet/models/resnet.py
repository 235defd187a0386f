"""Residual networks (He et al., 2016) laid out like torchvision's, with CIFAR options."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from convnet.checks import sequence
from convnet.models.layers import (
    activation_layer,
    choose,
    conv_block,
    conv_layer,
    norm_layer,
    positive_int,
    to_pair,
)
from convnet.models.resnet_blocks import BLOCKS, PREACT_BLOCKS, PadShortcut, ResidualBlock
from convnet.models.stages import StageInfo, first_conv_in


def _imagenet_stem(in_channels: int, width: int, kernel_initializer: str) -> tuple[nn.Module, ...]:
    # (B, C, H, W) -> (B, width, H/2, W/2) by the conv, then -> (B, width, H/4, W/4) by the pool.
    conv = conv_layer(
        in_channels, width, 7, 2, 3, use_bias=False, kernel_initializer=kernel_initializer
    )
    return conv, nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


def _cifar_stem(in_channels: int, width: int, kernel_initializer: str) -> tuple[nn.Module, ...]:
    # Small images keep their resolution; Identity keeps the `maxpool` name across stems.
    conv = conv_layer(
        in_channels, width, 3, 1, 1, use_bias=False, kernel_initializer=kernel_initializer
    )
    return conv, nn.Identity()


def _conv_shortcut(
    in_channels: int, out_channels: int, stride: int, norm: str, kernel_initializer: str
) -> nn.Module:
    # Option B: a strided 1x1 projection (+ norm), named downsample.0/.1 as in torchvision.
    return conv_block(
        in_channels,
        out_channels,
        kernel_size=1,
        strides=stride,
        padding=0,
        use_bias=False,
        norm=norm,
        activation="none",
        kernel_initializer=kernel_initializer,
    )


def _pad_shortcut(
    in_channels: int, out_channels: int, stride: int, norm: str, kernel_initializer: str
) -> nn.Module:
    return PadShortcut(in_channels, out_channels, stride)


STEMS = {"imagenet": _imagenet_stem, "cifar": _cifar_stem}
SHORTCUTS = {"conv": _conv_shortcut, "pad": _pad_shortcut}


def _stage_widths(
    layers: Sequence[int], widths: Sequence[int] | None, width_multiplier: float
) -> list[int]:
    """Return the validated, scaled width of each stage."""
    if not layers:
        raise ValueError("layers=[] is not allowed: give the number of blocks of each stage.")
    for index, blocks in enumerate(layers):
        positive_int(blocks, f"layers[{index}]")
    if widths is None:
        # torchvision's 64, 128, 256, 512, doubling at each stage.
        widths = [64 * 2**stage for stage in range(len(layers))]
    if len(widths) != len(layers):
        raise ValueError(
            f"widths={list(widths)} has {len(widths)} entries but layers={list(layers)} has "
            f"{len(layers)}: give one width per stage, or widths=null for 64, 128, 256, ..."
        )
    if (
        not isinstance(width_multiplier, int | float)
        or isinstance(width_multiplier, bool)
        or width_multiplier <= 0
    ):
        raise ValueError(f"width_multiplier={width_multiplier!r} is not allowed: use a number > 0.")
    for index, width in enumerate(widths):
        positive_int(width, f"widths[{index}]")
    return [max(round(width * width_multiplier), 1) for width in widths]


class ResNet(nn.Module):
    """A residual network with torchvision's names: conv1, bn1, relu, maxpool, layer1..N, fc.

    Its stages (`feature_info`) are layer1..layerN, named stage1..stageN; the stem is none.

    block: "basic" (two 3x3 convs) or "bottleneck" (1x1-3x3-1x1, 4x wider output).
    layers: number of blocks in each stage; stages after the first halve the resolution.
    widths: planes of each stage (stem width = widths[0]); None gives 64, 128, 256, ...
    image_size: [height, width] (or one int) of the input images, for the size check that
        builders run (`check_network`); the network itself takes any size.
    stem: "imagenet" (7x7/2 conv + 3x3/2 max-pool) or "cifar" (3x3/1 conv, no pool).
    shortcut: "conv" (1x1 projection when the shape changes) or "pad" (subsample and
        zero-pad channels, no parameters, as the CIFAR ResNets of the paper).
    preact: pre-activation blocks, with a final norm + activation before pooling.
    width_multiplier: scales every width (rounded to an int).
    zero_init_residual: start each residual branch at zero (its last norm weight, or its
        last conv for pre-activation blocks), as torchvision does.
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        in_channels: int,
        num_classes: int,
        image_size: int | Sequence[int],
        widths: Sequence[int] | None = None,
        stem: str = "cifar",
        zero_init_residual: bool = False,
        width_multiplier: float = 1.0,
        shortcut: str = "conv",
        preact: bool = False,
        norm: str = "batch",
        activation: str = "relu",
        kernel_initializer: str = "kaiming_normal",
    ) -> None:
        super().__init__()
        block_class = choose(PREACT_BLOCKS if preact else BLOCKS, "block", block)
        make_stem = choose(STEMS, "stem", stem)
        self._make_shortcut = choose(SHORTCUTS, "shortcut", shortcut)
        positive_int(num_classes, "num_classes")
        self.in_channels = positive_int(in_channels, "in_channels")
        self.image_size = to_pair(image_size, "image_size")
        layers = sequence(layers, "layers", "[3, 3, 3]")
        if widths is not None:
            widths = sequence(widths, "widths", "[16, 32, 64]")
        stage_widths = _stage_widths(layers, widths, width_multiplier)
        # A pre-activated input is already normalised, so its projection needs no norm.
        self._shortcut_norm = "none" if preact else norm
        self._block_options = {
            "norm": norm,
            "activation": activation,
            "kernel_initializer": kernel_initializer,
        }

        self.inplanes = stage_widths[0]
        self.conv1, self.maxpool = make_stem(in_channels, self.inplanes, kernel_initializer)
        self.bn1 = norm_layer(norm, self.inplanes)
        self.relu = activation_layer(activation)
        self.stage_names = []
        self.feature_info: list[StageInfo] = []
        # The stem's stride: 4 for ImageNet's (conv and pool, each /2), 1 for CIFAR's.
        reduction = self.conv1.stride[0] * getattr(self.maxpool, "stride", 1)
        for stage, (planes, blocks) in enumerate(zip(stage_widths, layers, strict=True)):
            name, stride = f"layer{stage + 1}", 1 if stage == 0 else 2
            setattr(self, name, self._make_layer(block_class, planes, blocks, stride))
            self.stage_names.append(name)
            reduction *= stride
            self.feature_info.append(
                StageInfo(
                    f"stage{stage + 1}",
                    name,
                    first_conv_in(self, name),
                    planes * block_class.expansion,
                    reduction,
                )
            )
        out_channels = stage_widths[-1] * block_class.expansion
        self.final_norm = norm_layer(norm, out_channels) if preact else nn.Identity()
        self.final_act = activation_layer(activation) if preact else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(out_channels, num_classes)

        if zero_init_residual:
            for name in self.stage_names:
                for residual_block in getattr(self, name):
                    residual_block.zero_init_residual()

    def _make_layer(
        self, block: type[ResidualBlock], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        """Return one stage: `blocks` blocks, the first strided and reshaping the shortcut."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = self._make_shortcut(
                self.inplanes,
                planes * block.expansion,
                stride,
                self._shortcut_norm,
                self._block_options["kernel_initializer"],
            )
        stage = [block(self.inplanes, planes, stride, downsample, **self._block_options)]
        self.inplanes = planes * block.expansion
        stage += [block(self.inplanes, planes, **self._block_options) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits (B, num_classes) for images (B, in_channels, H, W)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)  # halves H and W after the first stage
        x = self.final_act(self.final_norm(x))
        x = torch.flatten(self.avgpool(x), 1)  # (B, C, H, W) -> (B, C)
        return self.fc(x)
