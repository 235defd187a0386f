"""Finding layers: stages of VGG, ResNet and any other network, and names from the config."""

import pytest
import torch
from torch import nn

from convnet.callbacks.layers import Stage, classifier_layer, first_conv, named_modules, stages
from convnet.models import VGG, ResNet, StageInfo


def test_vgg_features_are_split_at_the_pools() -> None:
    network = VGG([8, 8, "M", 16, "M"], in_channels=3, num_classes=4, image_size=16)
    assert stages(network) == [
        Stage("stage1", "features.0", "features.3"),
        Stage("stage2", "features.5", "features.6"),
    ]


def test_resnet_stages_are_its_stage_names() -> None:
    network = ResNet("basic", [1, 1, 1], 3, 4, 16, widths=[4, 8, 16])
    assert [s.name for s in stages(network)] == ["stage1", "stage2", "stage3"]
    assert stages(network)[1] == Stage("stage2", "layer2.0.conv1", "layer2")
    assert first_conv(network) == "conv1" and classifier_layer(network) == "fc"


def test_other_networks_are_grouped_by_output_resolution() -> None:
    network = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
    )  # fmt: skip
    found = stages(network, torch.zeros(1, 1, 8, 8))
    assert found == [Stage("stage1", "0", "1"), Stage("stage2", "2", "5")]
    with pytest.raises(ValueError, match="example input"):
        stages(network)


def test_an_unknown_name_lists_the_convolutions_and_the_key() -> None:
    network = VGG([4, "M"], in_channels=3, num_classes=2, image_size=8)
    with pytest.raises(ValueError, match=r"callbacks.x.layers=\['feature.0'\].*features.0"):
        named_modules(network, ["feature.0"], "callbacks.x.layers")


def test_an_all_convolutional_network_is_classified_by_its_last_conv() -> None:
    network = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.Flatten())
    assert classifier_layer(network) == "2"


def test_pictures_take_the_stages_a_network_declares_not_a_guess() -> None:
    network = VGG([8, "M", 16, "M"], in_channels=3, num_classes=4, image_size=8)
    network.feature_info = [StageInfo("stage1", "features.4", "features.3", 16, 2)]
    assert stages(network) == [Stage("stage1", "features.3", "features.4")]
