"""check_image_size: names the layer where a too-small image vanishes, and the fix."""

import pytest
import torch
from torch import nn
from torchvision.models.vgg import cfgs as TORCHVISION_LAYERS

from convnet.models import VGG, ResNet, check_image_size, smallest_image_size

VGG16 = TORCHVISION_LAYERS["D"]


def test_vgg16_on_8x8_images_names_the_failing_layer_and_smallest_size():
    with pytest.raises(ValueError) as error:
        VGG(VGG16, 3, 10, 8)
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
