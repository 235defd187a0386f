"""The layer types of a custom stack: one builder per `type`, from the shape it receives.

Each builder takes the input shape without the batch, (C, H, W) for a feature map or (F,)
for flat features, and the layer's keys from the config, and returns one module. Keys and
defaults follow Keras (Conv2D, MaxPooling2D, Dense, ...); convolutions come from conv_block.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from convnet.checks import ConfigError, choose, fraction, positive_int, refuse
from convnet.models.layers import (
    INITIALIZERS,
    Pair,
    activation_layer,
    conv_block,
    norm_layer,
    padding_name,
)
from convnet.models.pooling import pool_layer

Shape = tuple[int, ...]


def feature_map_channels(shape: Shape) -> int:
    """Return the channels of a (C, H, W) input, or raise if the input is already flat."""
    if len(shape) != 3:
        raise ConfigError(
            f"it needs a feature map (channels, height, width) but gets flat features {shape}: "
            "put flatten, global pooling and dense layers after the convolutions and pools."
        )
    return shape[0]


def flat_features(shape: Shape) -> int:
    """Return the size of a flat (F,) input, or raise if it is still a feature map."""
    if len(shape) != 1:
        raise ConfigError(
            f"it needs flat features but gets a feature map {shape} (channels, height, width): "
            "add {type: flatten} or {type: global_avg_pool} before it."
        )
    return shape[0]


def conv(
    shape: Shape,
    filters: int,
    kernel_size: Pair,
    strides: Pair = 1,
    padding: str | Pair = "valid",
    dilation: Pair = 1,
    groups: int = 1,
    use_bias: bool | None = None,
    norm: str = "none",
    activation: str | None = "none",
    kernel_initializer: str = "kaiming_normal",
    dropout: float = 0.0,
) -> nn.Module:
    """Return conv_block's conv -> [norm] -> [activation] -> [dropout] (Keras Conv2D defaults)."""
    return conv_block(
        feature_map_channels(shape),
        filters,
        kernel_size,
        strides,
        padding,
        dilation,
        groups,
        use_bias,
        norm,
        activation,
        kernel_initializer,
        dropout,
    )


def max_pool(
    shape: Shape, pool_size: Pair = 2, strides: Pair | None = None, padding: str | Pair = "valid"
) -> nn.Module:
    """Return a max-pool (Keras MaxPooling2D: strides default to pool_size)."""
    feature_map_channels(shape)
    return pool_layer("max", pool_size, strides, padding_name(padding))


def avg_pool(
    shape: Shape, pool_size: Pair = 2, strides: Pair | None = None, padding: str | Pair = "valid"
) -> nn.Module:
    """Return an average-pool (Keras AveragePooling2D: strides default to pool_size)."""
    feature_map_channels(shape)
    return pool_layer("avg", pool_size, strides, padding_name(padding))


def _global_pool(pool: type[nn.Module]) -> Callable[[Shape], nn.Module]:
    def build(shape: Shape) -> nn.Module:
        feature_map_channels(shape)
        # (B, C, H, W) -> (B, C, 1, 1) -> (B, C), as Keras' GlobalAveragePooling2D.
        return nn.Sequential(pool(1), nn.Flatten())

    build.__doc__ = f"Return {pool.__name__}(1) then Flatten: (C, H, W) -> (C,)."
    return build


def batch_norm(shape: Shape) -> nn.Module:
    """Return BatchNorm2d over a feature map's channels, or BatchNorm1d over flat features."""
    if len(shape) == 3:
        return nn.BatchNorm2d(shape[0])
    return nn.BatchNorm1d(flat_features(shape))


def group_norm(shape: Shape, groups: int | None = None) -> nn.Module:
    """Return GroupNorm; groups=None takes the largest count <= 32 dividing the channels."""
    channels = shape[0]
    if groups is None:
        return norm_layer("group", channels)
    if channels % positive_int(groups, "groups"):
        raise ConfigError(
            f"groups={groups} does not divide the {channels} channels it receives: "
            "choose a divisor of the channel count, or leave groups out."
        )
    return nn.GroupNorm(groups, channels)


def layer_norm(shape: Shape) -> nn.Module:
    """Return layer norm over all of (C, H, W) of a feature map, or over flat features."""
    if len(shape) == 3:
        return norm_layer("layer", shape[0])
    return nn.LayerNorm(flat_features(shape))


def activation(shape: Shape, activation: str | None) -> nn.Module:
    """Return the activation named `activation` (Keras Activation; linear or null: none)."""
    return activation_layer(activation)


def dropout(shape: Shape, rate: float = 0.5) -> nn.Module:
    """Return element-wise Dropout zeroing each value with probability `rate` (Keras Dropout)."""
    return nn.Dropout(fraction(rate, "rate"))


def flatten(shape: Shape) -> nn.Module:
    """Return Flatten: (C, H, W) -> (C * H * W,)."""
    return nn.Flatten()


def dense(
    shape: Shape,
    units: int,
    activation: str | None = "none",
    use_bias: bool = True,
    kernel_initializer: str = "default",
) -> nn.Module:
    """Return Linear -> [activation] as a Sequential (Keras Dense), indices 0 and 1.

    kernel_initializer: "default" keeps PyTorch's Linear initialisation.
    """
    initializer = choose(INITIALIZERS, "kernel_initializer", kernel_initializer)
    layer = nn.Linear(flat_features(shape), positive_int(units, "units"), bias=use_bias)
    if initializer is not None:
        initializer(layer.weight.data, 1)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    act = activation_layer(activation)
    return nn.Sequential(layer) if isinstance(act, nn.Identity) else nn.Sequential(layer, act)


class Residual(nn.Module):
    """A residual layer: x + body(x), where the body keeps the shape of its input.

    CustomNet builds `body` from the layer's own list of layers (`{type: residual, layers:
    [...]}`), with the same builders, names and checks as the stack around it.
    """

    def __init__(self, body: nn.Sequential) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return x + body(x), of x's shape."""
        return x + self.body(x)


class Scale(nn.Module):
    """Multiplies its input by a fixed factor (e.g. logits by 0.125, as in Page's ResNet-9)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def scale(shape: Shape, factor: float) -> nn.Module:
    """Return a layer multiplying its input by `factor` (no weights)."""
    if isinstance(factor, bool) or not isinstance(factor, int | float) or factor == 0:
        raise refuse("factor", factor, "a non-zero number, e.g. 0.125")
    return Scale(float(factor))


# type -> builder. `linear` is PyTorch's word for Keras' `dense`. `residual` is not here:
# it holds a list of layers, which CustomNet builds itself.
LAYER_TYPES: dict[str, Callable[..., nn.Module]] = {
    "conv": conv,
    "max_pool": max_pool,
    "avg_pool": avg_pool,
    "global_avg_pool": _global_pool(nn.AdaptiveAvgPool2d),
    "global_max_pool": _global_pool(nn.AdaptiveMaxPool2d),
    "batch_norm": batch_norm,
    "group_norm": group_norm,
    "layer_norm": layer_norm,
    "activation": activation,
    "dropout": dropout,
    "flatten": flatten,
    "dense": dense,
    "linear": dense,
    "scale": scale,
}
