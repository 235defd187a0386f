"""Model builders: one conv block; VGG, ResNet and custom stacks built from it; a size check."""

from convnet.models.custom import CustomNet
from convnet.models.layers import SamePadConv2d, conv_block, conv_layer
from convnet.models.pooling import SamePadAvgPool2d, SamePadMaxPool2d, pool_layer
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
    "CustomNet",
    "PadShortcut",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ResNet",
    "SamePadAvgPool2d",
    "SamePadConv2d",
    "SamePadMaxPool2d",
    "check_image_size",
    "conv_block",
    "conv_layer",
    "pool_layer",
    "smallest_image_size",
]
