"""VGG: torchvision compatibility (names, parameters, weights, logits) and the CIFAR head."""

import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn
from torchvision.models.vgg import cfgs as TORCHVISION_LAYERS

from convnet.models import VGG

# torchvision's name for each configuration letter of the VGG paper.
NAMES = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}
VARIANTS = [(name, batch_norm) for name in NAMES for batch_norm in (False, True)]


def torchvision_vgg(name: str, batch_norm: bool) -> nn.Module:
    return getattr(torchvision.models, name + ("_bn" if batch_norm else ""))()


@pytest.mark.parametrize(("name", "batch_norm"), VARIANTS)
def test_imagenet_head_matches_torchvision_structure_and_state_dict(name, batch_norm):
    with torch.device("meta"):
        ours = VGG(
            TORCHVISION_LAYERS[NAMES[name]], 3, 1000, 224, batch_norm=batch_norm, head="imagenet"
        )
        reference = torchvision_vgg(name, batch_norm)
    assert [type(m) for m in ours.features] == [type(m) for m in reference.features]
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
    ours.load_state_dict(reference.state_dict(), strict=True)


def test_vgg11_gives_torchvision_logits_with_its_weights():
    torch.manual_seed(0)
    reference = torchvision.models.vgg11().eval()
    ours = VGG(TORCHVISION_LAYERS["A"], 3, 1000, 224, head="imagenet").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), rtol=0, atol=0)


def test_small_width_list_with_batch_norm_gives_logits():
    model = VGG([32, "M", 64, "M", 128, "M"], 3, 10, [32, 32], batch_norm=True, dropout=0.0)
    assert [type(m) for m in model.features[:4]] == [
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.MaxPool2d,
    ]
    assert model.classifier[-1].in_features == 128
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_head_pools_globally_into_one_linear_layer():
    model = VGG([16, "M"], 1, 5, 8, dropout=0.0)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert [type(m) for m in model.classifier] == [nn.Linear]
    with_dropout = VGG([16, "M"], 1, 5, 8, dropout=0.3)
    assert [type(m) for m in with_dropout.classifier] == [nn.Dropout, nn.Linear]


def test_image_size_may_be_an_int_or_a_listconfig():
    size = OmegaConf.create({"image_size": [16, 24]}).image_size
    assert VGG([8, "M"], 3, 2, size).image_size == (16, 24)
    assert VGG([8, "M"], 3, 2, 16).image_size == (16, 16)


def test_non_square_images_give_logits():
    model = VGG([8, "M", 16, "M"], 3, 4, [12, 20], batch_norm=True)
    assert model(torch.randn(2, 3, 12, 20)).shape == (2, 4)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"head": "global"}, ["head", "'global'", "cifar", "imagenet"]),
        ({"layers": [16, "P"]}, ["layers[1]", "'P'", "'M'"]),
        ({"layers": [16, 0]}, ["layers[1]", "0"]),
        ({"layers": ["M"]}, ["layers", "no convolution"]),
        ({"layers": 64}, ["layers=64", "a list", "[64, M, 128, M]"]),
        ({"layers": "64M"}, ["layers='64M'", "a list"]),
        ({"num_classes": 0}, ["num_classes", "0"]),
        ({"image_size": [32]}, ["image_size", "[32]"]),
        ({"activation": "mish"}, ["activation", "'mish'"]),
        ({"dropout": -0.1}, ["dropout", "-0.1"]),
    ],
)
def test_invalid_argument_error_names_key_and_value(arguments, named):
    kwargs = {"layers": [16, "M"], "in_channels": 3, "num_classes": 10, "image_size": 32}
    with pytest.raises(ValueError) as error:
        VGG(**{**kwargs, **arguments})
    for text in named:
        assert text in str(error.value)
