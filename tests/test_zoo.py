"""create_model: any zoo network by its config name, sized by a data config, overridable."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convnet.checks import ConfigError
from convnet.compose import CONFIG_DIR
from convnet.models import CustomNet, ResNet, create_model, model_names


def test_the_names_are_the_model_configs() -> None:
    assert model_names() == sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml"))
    assert {"small", "vgg11_bn", "resnet20", "resnet9", "custom"} <= set(model_names())


@pytest.mark.parametrize(
    ("data", "shape", "classes"),
    [
        ("shapes", (2, 3, 32, 32), 10),
        ("digits", (2, 1, 32, 32), 10),
        ("cifar100", (2, 3, 32, 32), 100),
    ],
)
def test_a_model_takes_the_data_configs_channels_classes_and_size(
    data: str, shape: tuple[int, ...], classes: int
) -> None:
    network = create_model("resnet20", data=data)
    assert isinstance(network, ResNet)
    assert network(torch.randn(shape)).shape == (2, classes)


def test_data_keys_are_overridden_where_the_model_reads_them() -> None:
    # custom.yaml's last dense layer has `units: ${data.num_classes}`: it follows the override.
    network = create_model("custom", in_channels=1, num_classes=5, image_size=48)
    assert isinstance(network, CustomNet)
    assert network(torch.randn(2, 1, 48, 48)).shape == (2, 5)


def test_model_keys_are_overridden() -> None:
    narrow = create_model("resnet20", widths=[8, 16, 32])
    first_conv = next(m for m in narrow.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.out_channels == 8
    default = sum(p.numel() for p in create_model("resnet20").parameters())
    assert sum(p.numel() for p in narrow.parameters()) < default / 3


def test_an_unknown_name_lists_the_models() -> None:
    with pytest.raises(ConfigError, match=r"model='resnet21'.*resnet20.*vgg11_bn"):
        create_model("resnet21")


def test_an_unknown_key_names_it_and_the_keys_allowed() -> None:
    with pytest.raises(ConfigError, match=r"unknown keys \['depth'\].*widths"):
        create_model("resnet20", depth=20)


def test_a_misspelt_key_is_named_with_the_one_meant() -> None:
    with pytest.raises(ConfigError) as raised:
        create_model("vgg11_bn", num_classs=100, depth=3)
    assert "unknown keys ['depth', 'num_classs'] (did you mean num_classs -> num_classes?)" in str(
        raised.value
    )


def test_a_bad_data_value_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data\.num_classes=1 "):
        create_model("small", num_classes=1)


def test_an_image_folders_data_asks_for_what_its_images_would_give() -> None:
    with pytest.raises(
        ConfigError, match=r"leaves in_channels, num_classes, image_size to the images a run"
    ):
        create_model("small", data="imagefolder")
    network = create_model("small", data="imagefolder", in_channels=1, num_classes=3, image_size=16)
    assert network(torch.zeros(2, 1, 16, 16)).shape == (2, 3)


def test_an_export_takes_no_overrides() -> None:
    with pytest.raises(ConfigError, match="as it was exported"):
        create_model("outputs/model.json", num_classes=3)
