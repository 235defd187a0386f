"""Residual blocks (He et al., 2016), post- and pre-activation, with torchvision's names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convnet.models.layers import activation_layer, conv_layer, norm_layer


def conv3x3(in_channels: int, filters: int, stride: int, kernel_initializer: str) -> nn.Conv2d:
    """Return a bias-free 3x3 conv with torchvision's symmetric padding of 1."""
    # Symmetric padding, not TensorFlow's "same", keeps torchvision's weights meaningful at
    # stride 2; both give ceil(input / stride) pixels.
    return conv_layer(
        in_channels,
        filters,
        3,
        stride,
        padding=1,
        use_bias=False,
        kernel_initializer=kernel_initializer,
    )


def conv1x1(in_channels: int, filters: int, stride: int, kernel_initializer: str) -> nn.Conv2d:
    """Return a bias-free 1x1 conv."""
    return conv_layer(
        in_channels,
        filters,
        1,
        stride,
        padding=0,
        use_bias=False,
        kernel_initializer=kernel_initializer,
    )


class PadShortcut(nn.Module):
    """Parameter-free shortcut: subsample by `stride`, append zero channels (He et al. option A)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"shortcut='pad' cannot go from {in_channels} to {out_channels} channels: it only "
                "adds channels. Use non-decreasing widths or shortcut='conv'."
            )
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, C + extra, ceil(H / s), ceil(W / s)), no parameters.
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection: conv-norm-act-conv-norm, add, act."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm: str = "batch",
        activation: str = "relu",
        kernel_initializer: str = "kaiming_normal",
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride, kernel_initializer)
        self.bn1 = norm_layer(norm, planes)
        self.relu = activation_layer(activation)
        self.conv2 = conv3x3(planes, planes, 1, kernel_initializer)
        self.bn2 = norm_layer(norm, planes)
        self.downsample = downsample

    def zero_init_residual(self) -> None:
        """Make the residual branch start at zero so the block starts as the identity."""
        _zero_weight(self.bn2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, as torchvision's ResNet v1.5), 1x1 expand by 4, residual add."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm: str = "batch",
        activation: str = "relu",
        kernel_initializer: str = "kaiming_normal",
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(in_channels, planes, 1, kernel_initializer)
        self.bn1 = norm_layer(norm, planes)
        self.conv2 = conv3x3(planes, planes, stride, kernel_initializer)
        self.bn2 = norm_layer(norm, planes)
        self.conv3 = conv1x1(planes, planes * self.expansion, 1, kernel_initializer)
        self.bn3 = norm_layer(norm, planes * self.expansion)
        self.relu = activation_layer(activation)
        self.downsample = downsample

    def zero_init_residual(self) -> None:
        """Make the residual branch start at zero so the block starts as the identity."""
        _zero_weight(self.bn3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class PreActBasicBlock(nn.Module):
    """Two 3x3 convs, each after norm and activation (He et al., identity mappings), plus input."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm: str = "batch",
        activation: str = "relu",
        kernel_initializer: str = "kaiming_normal",
    ) -> None:
        super().__init__()
        self.bn1 = norm_layer(norm, in_channels)
        self.relu = activation_layer(activation)
        self.conv1 = conv3x3(in_channels, planes, stride, kernel_initializer)
        self.bn2 = norm_layer(norm, planes)
        self.conv2 = conv3x3(planes, planes, 1, kernel_initializer)
        self.downsample = downsample

    def zero_init_residual(self) -> None:
        """Make the residual branch start at zero so the block starts as the identity."""
        _zero_weight(self.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        # A shortcut that changes shape takes the normalised input, as in the paper's code.
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


class PreActBottleneck(nn.Module):
    """1x1, 3x3, 1x1 convs, each after norm and activation (identity mappings), plus input."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm: str = "batch",
        activation: str = "relu",
        kernel_initializer: str = "kaiming_normal",
    ) -> None:
        super().__init__()
        self.bn1 = norm_layer(norm, in_channels)
        self.conv1 = conv1x1(in_channels, planes, 1, kernel_initializer)
        self.bn2 = norm_layer(norm, planes)
        self.conv2 = conv3x3(planes, planes, stride, kernel_initializer)
        self.bn3 = norm_layer(norm, planes)
        self.conv3 = conv1x1(planes, planes * self.expansion, 1, kernel_initializer)
        self.relu = activation_layer(activation)
        self.downsample = downsample

    def zero_init_residual(self) -> None:
        """Make the residual branch start at zero so the block starts as the identity."""
        _zero_weight(self.conv3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + identity


def _zero_weight(module: nn.Module) -> None:
    # A norm of "none" is an Identity, which has no weight to zero.
    weight = getattr(module, "weight", None)
    if weight is not None:
        nn.init.zeros_(weight)


ResidualBlock = BasicBlock | Bottleneck | PreActBasicBlock | PreActBottleneck

# Block name -> class, for post-activation (torchvision) and pre-activation networks.
BLOCKS: dict[str, type[BasicBlock | Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
PREACT_BLOCKS: dict[str, type[PreActBasicBlock | PreActBottleneck]] = {
    "basic": PreActBasicBlock,
    "bottleneck": PreActBottleneck,
}
