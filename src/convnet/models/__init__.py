"""Model builders: one conv block, VGG and ResNet built from it, and an image-size check."""

from convnet.models.layers import SamePadConv2d, conv_block, conv_layer
from convnet.models.resnet import ResNet
from convnet.models.resnet_blocks import (
    BasicBlock,
    Bottleneck,
    PadShortcut,
    PreActBasicBlock,
    PreActBottleneck,
)
from convnet.models.shape_check import check_image_size, smallest_image_size
from convnet.models.vgg import VGG

__all__ = [
    "VGG",
    "BasicBlock",
    "Bottleneck",
    "PadShortcut",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ResNet",
    "SamePadConv2d",
    "check_image_size",
    "conv_block",
    "conv_layer",
    "smallest_image_size",
]
