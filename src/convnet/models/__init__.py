"""Model builders: one conv block; VGG, ResNet and custom stacks built from it; their
declared stages; one tracer; the size check every builder runs (`check_network`)."""

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
from convnet.models.shape_check import check_image_size, check_network, smallest_image_size
from convnet.models.stages import StageInfo, infer_stages
from convnet.models.vgg import VGG
from convnet.models.zoo import create_model, model_names

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
    "StageInfo",
    "check_image_size",
    "check_network",
    "conv_block",
    "conv_layer",
    "create_model",
    "infer_stages",
    "model_names",
    "pool_layer",
    "smallest_image_size",
]
