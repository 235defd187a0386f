"""check_image_size: names the layer where a too-small image vanishes, and the fix; a
network that runs convolutions on one-pixel maps is warned about."""

import logging

import pytest
import torch
from torch import nn
from torchvision.models.vgg import cfgs as TORCHVISION_LAYERS

from convnet.build import build_network
from convnet.models import (
    VGG,
    CustomNet,
    ResNet,
    check_image_size,
    check_network,
    smallest_image_size,
)
from convnet.models.shape_check import warn_one_pixel_convolutions

VGG16 = TORCHVISION_LAYERS["D"]


def test_vgg16_on_8x8_images_names_the_failing_layer_and_smallest_size():
    with pytest.raises(ValueError) as error:
        check_network(VGG(VGG16, 3, 10, 8))
    message = str(error.value)
    # 8 -> 4 -> 2 -> 1 after three pools; the fourth pool (features.23) has nothing to halve.
    assert "'features.23' (MaxPool2d)" in message
    assert "1x1" in message
    assert "[32, 32]" in message
    assert "image_size=[8, 8]" in message


def test_vgg16_on_32x32_images_returns_the_output_shape():
    model = VGG(VGG16, 3, 10, 32)
    assert check_image_size(model, 3, [32, 32]) == (2, 10)


def test_check_runs_on_meta_device_without_touching_weights():
    model = VGG([8, "M"], 3, 2, 8, batch_norm=True)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    check_image_size(model, 3, 8)
    for name, tensor in model.state_dict().items():
        assert tensor.device.type == "cpu"
        torch.testing.assert_close(tensor, before[name])


def test_each_side_is_checked_separately():
    model = VGG([8, "M", 8, "M"], 3, 2, 16)
    assert smallest_image_size(model, 3, (2, 64)) == (4, 4)
    with pytest.raises(ValueError, match=r"1x32 .*'features.5' \(MaxPool2d\)") as error:
        check_image_size(model, 3, [2, 64], model_name="tiny")
    assert "tiny" in str(error.value)
    assert "[4, 4]" in str(error.value)


def test_valid_convolution_that_does_not_fit_is_named():
    model = nn.Sequential(nn.Conv2d(1, 2, 5), nn.Flatten())
    with pytest.raises(ValueError, match=r"'0' \(Conv2d\)") as error:
        check_image_size(model, 1, 3)
    assert "[5, 5]" in str(error.value)


def test_resnet_with_padding_never_vanishes():
    model = ResNet("basic", [1, 1, 1, 1], 3, 10, 224, widths=[8, 8, 8, 8], stem="imagenet")
    assert check_image_size(model, 3, 1) == (2, 10)


def test_wrong_channel_count_says_no_size_works():
    model = VGG([8, "M"], 3, 2, 8)
    with pytest.raises(ValueError, match="not about size"):
        check_image_size(model, 1, 8)


ONE_PIXEL = "see one pixel each and padding"


def _one_pixel_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if ONE_PIXEL in r.getMessage()]


@pytest.mark.parametrize(
    ("overrides", "warns"),
    [
        (["model=resnet18", "model.stem=imagenet", "data.image_size=16"], True),
        (["model=resnet18", "model.stem=imagenet", "data.image_size=224"], False),
        # 32 -> 16 -> 8: the last stage still sees 8x8.
        (["model=resnet20", "data.image_size=32"], False),
        # The last three convs see 2x2 maps; only the last pool makes them 1x1.
        (["model=vgg16", "data.image_size=32"], False),
    ],
    ids=["resnet18-imagenet-16px", "resnet18-imagenet-224px", "resnet20-32px", "vgg16-32px"],
)
def test_a_network_that_shrinks_its_maps_to_one_pixel_before_its_last_stage_warns_once(
    train_config, caplog: pytest.LogCaptureFixture, overrides: list[str], warns: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="convnet.models.shape_check"):
        build_network(train_config(*overrides))
    messages = _one_pixel_warnings(caplog)
    if not warns:
        assert messages == []
        return
    assert len(messages) == 1
    # 16 -> 8 (conv1) -> 4 (maxpool) -> 4 -> 2 (layer2) -> 1 (layer3's first conv).
    assert messages[0].startswith(
        "ResNet on image_size=[16, 16]: the feature map is 1x1 after layer 'layer3.0.conv1' "
        "(stage 'layer3'), so 7 convolution(s) with kernels larger than 1x1, the first "
        "'layer3.0.conv2', see one pixel"
    )
    # 33 px is the smallest side that leaves layer4 a 2x2 map.
    assert "use images of at least [33, 33] (data.image_size)" in messages[0]
    assert "model.stem=cifar" in messages[0]
    assert "fewer downsampling stages" in messages[0]


@pytest.mark.parametrize(
    ("conv", "size", "wasted"),
    [
        (nn.Conv2d(2, 2, 3, padding=1), (1, 1), ["1"]),
        (nn.Conv2d(2, 2, 1), (1, 1), []),  # a 1x1 conv on a 1x1 map is a linear layer
        (nn.Conv2d(2, 2, 3, padding=1), (2, 2), []),  # each output sees 2x2 pixels
        (nn.Conv2d(2, 2, 3, padding=1), (1, 8), []),  # still a convolution along the width
        (nn.Conv2d(2, 2, (1, 3), padding=(0, 1)), (1, 8), []),
        (nn.Conv2d(2, 2, (3, 1), padding=(1, 0)), (8, 1), []),
        (nn.Conv2d(2, 2, (1, 3), padding=(0, 1)), (8, 1), ["1"]),  # its taps all in padding
        (nn.Conv2d(2, 2, 3, padding=2, dilation=2), (2, 2), ["1"]),  # taps 2 apart on 2 px
    ],
)
def test_a_convolution_warns_when_each_output_sees_one_real_pixel(
    caplog: pytest.LogCaptureFixture, conv: nn.Conv2d, size: tuple[int, int], wasted: list[str]
) -> None:
    model = nn.Sequential(nn.Identity(), conv)
    with caplog.at_level(logging.WARNING, logger="convnet.models.shape_check"):
        assert warn_one_pixel_convolutions(model, 2, size) == wasted
    assert len(_one_pixel_warnings(caplog)) == len(wasted[:1])


def test_a_custom_stack_warns_once_when_complete_and_names_its_layer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conv = {"type": "conv", "filters": 4, "kernel_size": 3, "padding": "same"}
    layers = [conv, {"type": "max_pool"}, conv, conv, conv, {"type": "global_avg_pool"}]
    with caplog.at_level(logging.WARNING, logger="convnet.models.shape_check"):
        check_network(CustomNet(layers, in_channels=1, num_classes=3, image_size=2))
    messages = _one_pixel_warnings(caplog)
    assert len(messages) == 1
    assert "the feature map is 1x1 after layer 'layers.1_max_pool'" in messages[0]
    assert "3 convolution(s)" in messages[0]
    assert "use images of at least [4, 4]" in messages[0]
