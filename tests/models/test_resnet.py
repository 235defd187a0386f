"""ResNet: torchvision compatibility, the CIFAR ResNets of He et al., and the options."""

import pytest
import torch
import torchvision
from torch import nn

from convnet.models import (
    BasicBlock,
    Bottleneck,
    PadShortcut,
    PreActBasicBlock,
    PreActBottleneck,
    ResNet,
)

# torchvision's ImageNet ResNets: block type and blocks per stage.
TORCHVISION_RESNETS = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
    "resnet152": ("bottleneck", [3, 8, 36, 3]),
}

# He et al. 2016, table 6: CIFAR-10 ResNets and their parameter counts, published to two
# significant figures (ResNet-110 has 1,727,962, which the paper gives as 1.7M).
CIFAR_RESNETS = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7"}


def imagenet_resnet(name: str) -> ResNet:
    block, layers = TORCHVISION_RESNETS[name]
    return ResNet(block, layers, 3, 1000, 224, stem="imagenet")


def cifar_resnet(depth: int, **options) -> ResNet:
    blocks = (depth - 2) // 6
    return ResNet(
        "basic",
        [blocks] * 3,
        3,
        10,
        32,
        widths=[16, 32, 64],
        stem="cifar",
        shortcut="pad",
        **options,
    )


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(TORCHVISION_RESNETS))
def test_imagenet_resnet_loads_torchvision_state_dict_strictly(name):
    with torch.device("meta"):
        ours = imagenet_resnet(name)
        reference = getattr(torchvision.models, name)()
    assert count(ours) == count(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_gives_torchvision_logits_with_its_weights(name):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)().eval()
    ours = imagenet_resnet(name).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), rtol=0, atol=0)


def test_resnet20_has_269722_parameters():
    assert count(cifar_resnet(20)) == 269_722


@pytest.mark.parametrize(("depth", "published"), list(CIFAR_RESNETS.items()))
def test_cifar_resnet_parameter_count_matches_paper(depth, published):
    with torch.device("meta"):
        model = cifar_resnet(depth)
    assert f"{count(model) / 1e6:.2g}" == published


def test_pad_shortcut_subsamples_and_appends_zero_channels():
    shortcut = PadShortcut(2, 5, stride=2)
    images = torch.randn(1, 2, 5, 5)
    out = shortcut(images)
    assert out.shape == (1, 5, 3, 3)
    torch.testing.assert_close(out[:, :2], images[:, :, ::2, ::2])
    assert out[:, 2:].abs().sum() == 0


def test_pad_shortcut_refuses_fewer_channels():
    with pytest.raises(ValueError, match="shortcut='pad'"):
        ResNet("basic", [1, 1], 3, 10, 32, widths=[32, 16], shortcut="pad")


def test_cifar_stem_keeps_resolution_and_names():
    model = cifar_resnet(20)
    assert isinstance(model.maxpool, nn.Identity)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert model.stage_names == ["layer1", "layer2", "layer3"]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("block", "classes"), [("basic", PreActBasicBlock), ("bottleneck", PreActBottleneck)]
)
def test_preact_blocks_give_logits(block, classes):
    model = ResNet(block, [1, 1], 3, 7, 16, widths=[8, 16], preact=True)
    assert isinstance(model.layer2[0], classes)
    assert isinstance(model.final_norm, nn.BatchNorm2d)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)


@pytest.mark.parametrize("preact", [False, True])
@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_zero_init_residual_makes_every_block_an_identity_branch(block, preact):
    model = ResNet(block, [2, 2], 3, 4, 16, widths=[8, 16], zero_init_residual=True, preact=preact)
    for residual_block in [*model.layer1, *model.layer2]:
        last = {
            BasicBlock: "bn2",
            Bottleneck: "bn3",
            PreActBasicBlock: "conv2",
            PreActBottleneck: "conv3",
        }[type(residual_block)]
        assert getattr(residual_block, last).weight.abs().sum() == 0


def test_width_multiplier_scales_every_stage():
    model = ResNet("basic", [1, 1, 1], 3, 10, 32, widths=[16, 32, 64], width_multiplier=1.5)
    assert model.conv1.out_channels == 24
    assert model.fc.in_features == 96


def test_default_widths_double_from_64():
    with torch.device("meta"):
        model = ResNet("bottleneck", [1, 1, 1], 3, 10, 32)
    assert model.fc.in_features == 256 * 4


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"block": "wide"}, ["block", "'wide'", "basic", "bottleneck"]),
        ({"stem": "tiny"}, ["stem", "'tiny'", "cifar", "imagenet"]),
        ({"shortcut": "identity"}, ["shortcut", "'identity'", "conv", "pad"]),
        ({"layers": []}, ["layers", "[]"]),
        ({"layers": 3}, ["layers=3", "a list", "[3, 3, 3]"]),
        ({"widths": 16}, ["widths=16", "a list"]),
        ({"layers": [2, 0]}, ["layers[1]", "0"]),
        ({"widths": [16]}, ["widths", "[16]", "layers"]),
        ({"width_multiplier": 0}, ["width_multiplier", "0"]),
        ({"norm": "switch"}, ["norm", "'switch'"]),
        ({"image_size": 0}, ["image_size", "0"]),
    ],
)
def test_invalid_argument_error_names_key_and_value(arguments, named):
    kwargs = {
        "block": "basic",
        "layers": [1, 1],
        "in_channels": 3,
        "num_classes": 10,
        "image_size": 32,
        "widths": [16, 32],
    }
    with pytest.raises(ValueError) as error:
        ResNet(**{**kwargs, **arguments})
    for text in named:
        assert text in str(error.value)
