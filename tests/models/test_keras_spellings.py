"""A custom stack written with Keras users' spellings builds the network convnet's spelling does."""

from __future__ import annotations

import pytest
import torch

from convnet.checks import ConfigError
from convnet.models import CustomNet
from convnet.models.layers import conv_block

CONVNET = [
    {"type": "conv", "filters": 4, "kernel_size": 3, "padding": "same", "dilation": 2},
    {"type": "conv", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
    {"type": "conv", "filters": 6, "kernel_size": 3, "padding": "valid", "activation": "none"},
    {"type": "max_pool", "padding": "same"},
    {"type": "avg_pool", "pool_size": 1, "padding": "valid"},
    {"type": "activation", "activation": "none"},
    {"type": "flatten"},
    {"type": "dense", "units": 5, "activation": "none"},
]
KERAS = [
    {"type": "conv", "filters": 4, "kernel_size": 3, "padding": "SAME", "dilation_rate": 2},
    {"type": "conv", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "Same"},
    {"type": "conv", "filters": 6, "kernel_size": 3, "padding": "VALID", "activation": "linear"},
    {"type": "max_pool", "padding": "SAME"},
    {"type": "avg_pool", "pool_size": 1, "padding": "Valid"},
    {"type": "activation", "activation": None},
    {"type": "flatten"},
    {"type": "dense", "units": 5, "activation": "linear"},
]
DEFAULTS = {"norm": "batch", "activation": "relu"}


def _built(layers, conv_defaults) -> CustomNet:
    torch.manual_seed(0)
    return CustomNet(layers, 3, 3, 13, conv_defaults=conv_defaults).eval()


def test_keras_spellings_build_the_same_network_as_convnets() -> None:
    ours, theirs = _built(CONVNET, DEFAULTS), _built(KERAS, DEFAULTS)
    assert {k: v.shape for k, v in theirs.state_dict().items()} == {
        k: v.shape for k, v in ours.state_dict().items()
    }
    assert [type(m) for m in theirs.modules()] == [type(m) for m in ours.modules()]
    images = torch.randn(2, 3, 13, 13)
    with torch.no_grad():
        torch.testing.assert_close(theirs(images), ours(images))
    assert ours.shapes == theirs.shapes and ours.shapes[1] == (4, 7, 7)  # ceil(13 / 2)


def test_conv_defaults_take_keras_spellings_and_a_layer_overrides_them() -> None:
    keras = {"padding": "SAME", "dilation_rate": 2, "activation": None}
    ours = {"padding": "same", "dilation": 2, "activation": "none"}
    layers = [
        {"type": "conv", "filters": 2, "kernel_size": 3},
        {"type": "conv", "filters": 2, "kernel_size": 3, "dilation_rate": 1},
    ]
    first, second = _built(layers, keras), _built(layers, ours)
    assert first.layers[0][0].dilation == (2, 2) and first.layers[1][0].dilation == (1, 1)
    with torch.no_grad():
        images = torch.randn(1, 3, 13, 13)
        torch.testing.assert_close(first(images), second(images))


def test_a_layer_with_both_dilation_and_dilation_rate_is_refused() -> None:
    layers = [{"type": "conv", "filters": 2, "kernel_size": 3, "dilation": 1, "dilation_rate": 2}]
    with pytest.raises(ConfigError, match=r"layers\[0\] sets both 'dilation' and 'dilation_rate'"):
        CustomNet(layers, 3, 2, 8)


def test_dilation_rate_is_only_a_convs_key() -> None:
    with pytest.raises(
        ConfigError, match=r"layers\[0\] \(max_pool\) has unknown key 'dilation_rate'"
    ):
        CustomNet([{"type": "max_pool", "dilation_rate": 2}], 3, 2, 8)


def test_a_padding_name_in_any_case_is_still_checked() -> None:
    with pytest.raises(ConfigError, match=r"padding='FULL' is not allowed: use one of same, valid"):
        conv_block(3, 4, padding="FULL")
    assert conv_block(3, 4, padding="VALID", norm="none", activation=None)[0].padding == (0, 0)
