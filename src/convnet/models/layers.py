"""The one convolution block every architecture is built from (Keras vocabulary)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# choose, positive_int and to_pair are the model families' checks too (vgg, resnet, pooling).
from convnet.checks import ConfigError, choose, fraction, positive_int, to_pair

Pair = int | Sequence[int]


def _fan_out_relu(init: Callable[..., torch.Tensor]) -> Callable[[torch.Tensor, int], None]:
    # fan_out is what torchvision uses for VGG and ResNet; it keeps gradient scale in backprop.
    return lambda weight, groups: init(weight, mode="fan_out", nonlinearity="relu")


def _plain(init: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor, int], None]:
    return lambda weight, groups: init(weight)


INITIALIZERS: dict[str, Callable[[torch.Tensor, int], None] | None] = {
    "kaiming_normal": _fan_out_relu(nn.init.kaiming_normal_),
    "kaiming_uniform": _fan_out_relu(nn.init.kaiming_uniform_),
    "he_normal": _fan_out_relu(nn.init.kaiming_normal_),
    "he_uniform": _fan_out_relu(nn.init.kaiming_uniform_),
    "xavier_normal": _plain(nn.init.xavier_normal_),
    "xavier_uniform": _plain(nn.init.xavier_uniform_),
    "glorot_normal": _plain(nn.init.xavier_normal_),
    "glorot_uniform": _plain(nn.init.xavier_uniform_),
    "orthogonal": _plain(nn.init.orthogonal_),
    "dirac": lambda weight, groups: nn.init.dirac_(weight, groups=groups),
    # None keeps torch's own reset_parameters() for both weight and bias.
    "default": None,
}

# Activations are not in-place so that forward hooks see each layer's own output.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "none": nn.Identity,
}


def _group_count(channels: int) -> int:
    # The largest group count <= 32 that divides the channels (Wu & He use 32 groups).
    return max(g for g in range(1, min(32, channels) + 1) if channels % g == 0)


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "group": lambda channels: nn.GroupNorm(_group_count(channels), channels),
    # Layer norm over (C, H, W) of a feature map is GroupNorm with a single group.
    "layer": lambda channels: nn.GroupNorm(1, channels),
    "none": lambda channels: nn.Identity(),
}


def activation_name(activation: str | None) -> str | None:
    """Return `activation` as ACTIVATIONS names it: Keras' "no activation", None or "linear",
    is "none"."""
    return "none" if activation is None or activation == "linear" else activation


def activation_layer(activation: str | None) -> nn.Module:
    """Return a fresh activation module for a name in ACTIVATIONS ("none" gives Identity)."""
    return choose(ACTIVATIONS, "activation", activation_name(activation))()


def norm_layer(norm: str, channels: int) -> nn.Module:
    """Return a fresh normalisation module over `channels` for a name in NORMS."""
    return choose(NORMS, "norm", norm)(channels)


def same_pads(
    size: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> tuple[int, int, int, int]:
    """Return TensorFlow's "same" padding (left, right, top, bottom) for a (height, width) map.

    The output is ceil(size / stride); the total pad depends on the input size, and an odd
    pixel goes to the bottom/right. The order is the one F.pad takes (last dimension first).
    """
    pads = []
    for side, k, s, d in zip(size, kernel, stride, dilation, strict=True):
        out = (side + s - 1) // s
        total = max((out - 1) * s + (k - 1) * d + 1 - side, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return left, right, top, bottom


class SamePadConv2d(nn.Conv2d):
    """Conv2d whose output is ceil(input / stride) for any kernel, dilation and stride.

    PyTorch only allows padding="same" at stride 1, so this pads like TensorFlow: the total
    pad depends on the input size and any odd pixel goes to the bottom/right.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_pads(x.shape[-2:], self.kernel_size, self.stride, self.dilation)
        return super().forward(F.pad(x, pads))


def _valid_padding(
    kernel: tuple[int, int], strides: tuple[int, int], dilation: tuple[int, int]
) -> tuple[type[nn.Conv2d], str | tuple[int, int]]:
    return nn.Conv2d, (0, 0)


def _same_padding(
    kernel: tuple[int, int], strides: tuple[int, int], dilation: tuple[int, int]
) -> tuple[type[nn.Conv2d], str | tuple[int, int]]:
    if strides != (1, 1):
        return SamePadConv2d, (0, 0)
    totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    if all(t % 2 == 0 for t in totals):
        # Symmetric: plain ints, which show up in reprs and match torchvision's layers.
        return nn.Conv2d, (totals[0] // 2, totals[1] // 2)
    # PyTorch's own "same" (stride 1 only) also puts the odd pixel at the bottom/right.
    return nn.Conv2d, "same"


# Each Keras padding name -> (conv class, Conv2d padding argument) for a kernel/stride/dilation.
PADDINGS = {"same": _same_padding, "valid": _valid_padding}


def padding_name(padding: str | Pair) -> str | Pair:
    """Return `padding` as PADDINGS names it when it is one of its names in any case
    ("SAME", TensorFlow's spelling, is "same"); anything else as given, to be checked."""
    if isinstance(padding, str) and padding.lower() in PADDINGS:
        return padding.lower()
    return padding


def conv_layer(
    in_channels: int,
    filters: int,
    kernel_size: Pair = 3,
    strides: Pair = 1,
    padding: str | Pair = "same",
    dilation: Pair = 1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_initializer: str = "kaiming_normal",
) -> nn.Conv2d:
    """Return one initialised Conv2d (a SamePadConv2d for padding="same" with stride > 1).

    padding: "same" (output = ceil(input / strides)), "valid" (no padding), in any case, or
    an int/pair of pixels added on each side.
    """
    for name, value in (("in_channels", in_channels), ("filters", filters), ("groups", groups)):
        positive_int(value, name)
    for name, value in (("in_channels", in_channels), ("filters", filters)):
        if value % groups:
            raise ConfigError(
                f"{name}={value} is not divisible by groups={groups}: "
                "choose channel counts that are multiples of groups."
            )
    kernel = to_pair(kernel_size, "kernel_size")
    stride_pair = to_pair(strides, "strides")
    dilation_pair = to_pair(dilation, "dilation")
    initializer = choose(INITIALIZERS, "kernel_initializer", kernel_initializer)
    padding = padding_name(padding)
    if isinstance(padding, str):
        padding_rule = choose(PADDINGS, "padding", padding)
        conv_class, conv_padding = padding_rule(kernel, stride_pair, dilation_pair)
    else:
        conv_class, conv_padding = nn.Conv2d, to_pair(padding, "padding", minimum=0)
    conv = conv_class(
        in_channels,
        filters,
        kernel,
        stride=stride_pair,
        padding=conv_padding,
        dilation=dilation_pair,
        groups=groups,
        bias=use_bias,
    )
    if initializer is not None:
        initializer(conv.weight.data, groups)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    return conv


def conv_block(
    in_channels: int,
    filters: int,
    kernel_size: Pair = 3,
    strides: Pair = 1,
    padding: str | Pair = "same",
    dilation: Pair = 1,
    groups: int = 1,
    use_bias: bool | None = None,
    norm: str = "batch",
    activation: str | None = "relu",
    kernel_initializer: str = "kaiming_normal",
    dropout: float = 0.0,
) -> nn.Sequential:
    """Return conv -> norm -> activation -> dropout as a Sequential, leaving out unused parts.

    use_bias: None gives the conv a bias only when no norm follows (a norm cancels it).
    activation: a name in ACTIVATIONS; None and "linear" (Keras' words) are "none".
    dropout: probability of zeroing each activation (Keras Dropout, element-wise).
    """
    norm_factory = choose(NORMS, "norm", norm)
    activation = activation_name(activation)
    activation_factory = choose(ACTIVATIONS, "activation", activation)
    dropout = fraction(dropout, "dropout")
    bias = norm == "none" if use_bias is None else use_bias
    layers: list[nn.Module] = [
        conv_layer(
            in_channels,
            filters,
            kernel_size,
            strides,
            padding,
            dilation,
            groups,
            bias,
            kernel_initializer,
        )
    ]
    if norm != "none":
        layers.append(norm_factory(filters))
    if activation != "none":
        layers.append(activation_factory())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
