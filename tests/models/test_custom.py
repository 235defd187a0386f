"""CustomNet: a Keras-like list of layers gives the network a hand-written one would."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from convnet.callbacks.layers import Stage, stages
from convnet.models import CustomNet, SamePadAvgPool2d, SamePadMaxPool2d, pool_layer

# The seed example: Conv2D(32, 3, relu) -> MaxPool -> Conv2D(64, 3) -> MaxPool -> Conv2D(64, 3)
# -> Flatten -> Dense(64) -> Dense(10), written as configs/model/custom.yaml writes it.
SEED_LAYERS = """
- {type: conv, filters: 32, kernel_size: 3, activation: relu}
- {type: max_pool, pool_size: 2}
- {type: conv, filters: 64, kernel_size: 3, activation: relu}
- {type: max_pool, pool_size: 2}
- {type: conv, filters: 64, kernel_size: 3, activation: relu}
- {type: flatten}
- {type: dense, units: 64, activation: relu}
- {type: dense, units: 10}
"""


def seed_layers() -> list:
    return OmegaConf.create(SEED_LAYERS)


def hand_built() -> nn.Sequential:
    # 32 -> 30 -> 15 -> 13 -> 6 -> 4: 64 * 4 * 4 features after Flatten.
    return nn.Sequential(
        nn.Conv2d(3, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(1024, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_seed_example_equals_the_hand_built_sequential():
    ours, reference = CustomNet(seed_layers(), 3, 10, 32), hand_built()
    # The Keras/TensorFlow tutorial's CIFAR-10 model has 122,570 parameters.
    assert count(ours) == count(reference) == 122_570
    with torch.no_grad():
        for mine, theirs in zip(ours.parameters(), reference.parameters(), strict=True):
            mine.copy_(theirs)
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(images), reference(images), rtol=0, atol=0)


def test_layers_have_stable_names_and_shapes():
    model = CustomNet(seed_layers(), 3, 10, 32)
    names = [name for name, _ in model.layers.named_children()]
    assert names == [
        "0_conv",
        "1_max_pool",
        "2_conv",
        "3_max_pool",
        "4_conv",
        "5_flatten",
        "6_dense",
        "7_dense",
    ]
    assert "layers.0_conv.0.weight" in model.state_dict()
    assert model.shapes[:2] == [(32, 30, 30), (32, 15, 15)]
    assert model.shapes[-1] == (10,)


def test_a_classifier_is_appended_after_a_feature_map():
    model = CustomNet(
        [{"type": "conv", "filters": 4, "kernel_size": 3, "name": "features"}], 1, 5, 6
    )
    assert [name for name, _ in model.layers.named_children()] == [
        "features",
        "1_flatten",
        "2_dense",
    ]
    assert model.layers[-1][0].in_features == 4 * 4 * 4
    assert model(torch.randn(2, 1, 6, 6)).shape == (2, 5)


def test_a_stack_ending_in_class_scores_gets_no_classifier():
    layers = [
        {"type": "conv", "filters": 3, "kernel_size": 1},
        {"type": "global_avg_pool", "name": "pool"},
    ]
    model = CustomNet(layers, 2, 3, 4)
    assert [name for name, _ in model.layers.named_children()] == ["0_conv", "pool"]
    images = torch.randn(2, 2, 4, 4)
    scores = model.layers[0](images).mean(dim=(2, 3))
    torch.testing.assert_close(model(images), scores)


def test_conv_defaults_apply_unless_a_layer_sets_the_key():
    layers = [
        {"type": "conv", "filters": 8, "kernel_size": 3},
        {"type": "conv", "filters": 8, "kernel_size": 3, "groups": 8, "norm": "none"},
    ]
    defaults = {"padding": "same", "norm": "batch", "activation": "relu"}
    model = CustomNet(layers, 3, 2, 8, conv_defaults=defaults)
    first, depthwise = model.layers[0], model.layers[1]
    assert [type(m) for m in first] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert first[0].bias is None  # a norm follows, so no bias
    assert [type(m) for m in depthwise] == [nn.Conv2d, nn.ReLU]
    assert depthwise[0].weight.shape == (8, 1, 3, 3)
    assert model.shapes[1] == (8, 8, 8)


def test_norms_after_flatten_work_on_features():
    layers = [
        {"type": "flatten"},
        {"type": "batch_norm"},
        {"type": "layer_norm"},
        {"type": "group_norm", "groups": 4},
    ]
    model = CustomNet(layers, 1, 3, 4)
    kinds = [type(m) for m in list(model.layers)[1:4]]
    assert kinds == [nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm]
    assert model(torch.randn(2, 1, 4, 4)).shape == (2, 3)


def test_strided_dilated_and_same_padded_layers_give_keras_sizes():
    layers = [
        {"type": "conv", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
        {"type": "conv", "filters": 4, "kernel_size": 3, "dilation": 2},
        {"type": "max_pool", "pool_size": 3, "strides": 2, "padding": "same"},
        {"type": "avg_pool", "pool_size": 2, "padding": "same"},
    ]
    model = CustomNet(layers, 3, 2, 15)
    # 15 -> ceil(15/2) = 8 -> 8 - 2*2 = 4 -> ceil(4/2) = 2 -> ceil(2/2) = 1
    assert [shape[1:] for shape in model.shapes[:4]] == [(8, 8), (4, 4), (2, 2), (1, 1)]


def test_same_pooling_averages_only_real_pixels_and_never_picks_padding():
    image = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    average = pool_layer("avg", 2, padding="same")
    maximum = pool_layer("max", 2, padding="same")
    assert isinstance(average, SamePadAvgPool2d) and isinstance(maximum, SamePadMaxPool2d)
    # TensorFlow: the odd pixel of padding goes to the bottom/right and is not averaged.
    expected = torch.tensor([[(1 + 2 + 4 + 5) / 4, (3 + 6) / 2], [(7 + 8) / 2, 9.0]])
    torch.testing.assert_close(average(image)[0, 0], expected)
    torch.testing.assert_close(maximum(-image)[0, 0], torch.tensor([[-1.0, -3.0], [-7.0, -9.0]]))


def test_a_too_small_image_names_the_layer_and_the_size_the_whole_stack_needs():
    block = [{"type": "conv", "filters": 2, "kernel_size": 3}, {"type": "max_pool"}]
    with pytest.raises(ValueError) as error:
        CustomNet(block * 3, 1, 2, 8)
    message = str(error.value)
    # 8 -> 6 -> 3 -> 1, and the second pool has nothing left to halve.
    assert "'layers.3_max_pool'" in message
    assert "image_size=[8, 8]" in message
    # Three conv+pool blocks need 22: 22 -> 20 -> 10 -> 8 -> 4 -> 2 -> 1.
    assert "[22, 22]" in message


@pytest.mark.parametrize(
    ("layers", "named"),
    [
        ([{"type": "conv3d"}], ["layers[0].type='conv3d'", "conv", "max_pool", "dense"]),
        (5, ["layers=5", "a list", "type: conv"]),
        ({"type": "conv"}, ["layers={'type': 'conv'}", "a list"]),
        ([{"filters": 3}], ["layers[0]", "type"]),
        (["conv"], ["layers[0]='conv'", "type"]),
        (
            [{"type": "conv", "filters": 3, "kernel_size": 3, "stride": 2}],
            ["layers[0] (conv)", "'stride'", "did you mean 'strides'", "kernel_size"],
        ),
        ([{"type": "conv", "filters": 3}], ["layers[0] (conv)", "'kernel_size'"]),
        (
            [{"type": "flatten"}, {"type": "conv", "filters": 3, "kernel_size": 1}],
            ["layers[1] (conv)", "flat"],
        ),
        ([{"type": "dense", "units": 4}], ["layers[0] (dense)", "flatten"]),
        ([{"type": "flatten"}, {"type": "dense", "units": 0}], ["layers[1] (dense)", "units=0"]),
        (
            [{"type": "activation", "activation": "swish"}],
            ["layers[0] (activation)", "'swish'", "gelu"],
        ),
        ([{"type": "dropout", "rate": 1.5}], ["layers[0] (dropout)", "rate=1.5"]),
        (
            [{"type": "group_norm", "groups": 2}],
            ["layers[0] (group_norm)", "groups=2", "3 channels"],
        ),
        ([{"type": "max_pool", "padding": "full"}], ["layers[0] (max_pool)", "'full'", "same"]),
        (
            [{"type": "conv", "filters": 3, "kernel_size": 3, "groups": 2}],
            ["layers[0] (conv)", "groups=2"],
        ),
        ([{"type": "flatten", "name": "a.b"}], ["layers[0].name='a.b'", "no dots"]),
        (
            [{"type": "flatten", "name": "x"}, {"type": "flatten", "name": "x"}],
            ["layers[1].name='x'"],
        ),
    ],
)
def test_bad_layers_fail_at_build_time_naming_index_and_allowed_values(layers, named):
    with pytest.raises(ValueError) as error:
        CustomNet(layers, 3, 2, 8)
    for text in named:
        assert text in str(error.value)


def test_unknown_conv_default_is_named():
    with pytest.raises(ValueError, match=r"conv_defaults has unknown key 'activations'"):
        CustomNet([], 3, 2, 8, conv_defaults={"activations": "relu"})


SAME = {"kernel_size": 3, "padding": "same"}


def test_residual_layer_adds_its_body_to_its_input_like_a_hand_written_block():
    layers = [
        {"type": "conv", "filters": 4, **SAME},
        {"type": "residual", "layers": [{"type": "conv", "filters": 4, **SAME}] * 2},
        {"type": "global_avg_pool"},
    ]
    ours = CustomNet(layers, 3, 4, 6, conv_defaults={"activation": "relu"}).eval()
    stem, first, second = (nn.Conv2d(c, 4, 3, padding=1) for c in (3, 4, 4))

    def reference(x: torch.Tensor) -> torch.Tensor:
        x = stem(x).relu()
        x = x + second(first(x).relu()).relu()
        return x.mean(dim=(2, 3))

    with torch.no_grad():
        theirs = [*stem.parameters(), *first.parameters(), *second.parameters()]
        for mine, their in zip(ours.parameters(), theirs, strict=True):
            mine.copy_(their)
        images = torch.randn(2, 3, 6, 6)
        torch.testing.assert_close(ours(images), reference(images))


def test_residual_body_layers_are_named_like_the_stack_and_take_conv_defaults():
    body = [
        {"type": "conv", "filters": 8, "kernel_size": 3},
        {"type": "conv", "filters": 8, "kernel_size": 1, "name": "x"},
    ]
    layers = [
        {"type": "conv", "filters": 8, "kernel_size": 3},
        {"type": "residual", "layers": body},
        {"type": "flatten", "name": "x"},  # names need only be unique within their list
    ]
    model = CustomNet(layers, 3, 2, 8, conv_defaults={"padding": "same", "norm": "batch"})
    names = [name for name, _ in model.named_modules()]
    assert "layers.1_residual.body.0_conv.0" in names and "layers.1_residual.body.x.0" in names
    inner = model.layers.get_submodule("1_residual.body.0_conv")
    assert [type(m) for m in inner] == [nn.Conv2d, nn.BatchNorm2d]  # norm from conv_defaults
    assert inner[0].padding == (1, 1)
    assert model.shapes[:2] == [(8, 8, 8), (8, 8, 8)]  # one shape per stack layer
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 2)


def test_residual_layers_may_nest():
    inner = {"type": "residual", "layers": [{"type": "conv", "filters": 3, **SAME}]}
    model = CustomNet([{"type": "residual", "layers": [inner, inner]}], 3, 2, 4)
    assert "layers.0_residual.body.1_residual.body.0_conv.0.weight" in model.state_dict()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            [{"type": "conv", "filters": 16, "kernel_size": 3, "strides": 2, "padding": "same"}],
            ["layers[1] (residual)", "(8, 6, 6) into (16, 3, 3)", "must keep the shape"],
        ),
        ([{"type": "conv", "filters": 8, "kernel_size": 3}], ["(8, 6, 6) into (8, 4, 4)"]),
        ([], ["layers[1].layers=[]", "non-empty list"]),
        ([{"type": "conv", "filter": 8}], ["layers[1].layers[0] (conv)", "'filters'"]),
        (
            [{"type": "flatten"}, {"type": "conv", "filters": 8, "kernel_size": 1}],
            ["layers[1].layers[1] (conv)", "flat"],
        ),
        ([{"type": "pool"}], ["layers[1].layers[0].type='pool'", "residual"]),
    ],
)
def test_bad_residual_body_fails_at_build_time_naming_the_layer(body, named):
    layers = [
        {"type": "conv", "filters": 8, "kernel_size": 3},
        {"type": "residual", "layers": body},
    ]
    with pytest.raises(ValueError) as error:
        CustomNet(layers, 3, 2, 8)
    for text in named:
        assert text in str(error.value)


def test_image_size_check_sees_through_residual_layers():
    block = [{"type": "conv", "filters": 2, "kernel_size": 3}, {"type": "max_pool"}]
    residual = {"type": "residual", "layers": [{"type": "conv", "filters": 2, **SAME}]}
    with pytest.raises(ValueError) as error:
        CustomNet([*block, residual] * 3, 1, 2, 8)
    message = str(error.value)
    # As without the residual layers (test above): 8 -> 6 -> 3 -> 1, and 22 is the smallest.
    assert "'layers.4_max_pool'" in message and "[22, 22]" in message
    assert CustomNet([*block, residual] * 3, 1, 2, 22).shapes[8] == (2, 1, 1)


def test_picture_stages_of_a_custom_net_end_at_its_residual_layers():
    conv = {"type": "conv", "filters": 4, **SAME}
    layers = [
        {**conv, "name": "prep"},
        {"type": "max_pool"},
        {"type": "residual", "name": "res", "layers": [conv, conv]},
        {"type": "global_max_pool"},
    ]
    model = CustomNet(layers, 3, 2, 8, conv_defaults={"activation": "relu"}).eval()
    assert stages(model, torch.zeros(1, 3, 8, 8)) == [
        Stage("stage1", "layers.prep.0", "layers.prep.1"),
        # The stage's output is x + body(x), not the body's last activation.
        Stage("stage2", "layers.res.body.0_conv.0", "layers.res"),
    ]
