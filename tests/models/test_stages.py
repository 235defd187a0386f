"""Declared stages (feature_info) against torchvision's layouts and real forward passes; the
one tracer against a real forward; the size check of the build path."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.models.vgg import cfgs as TORCHVISION_LAYERS

from convnet.build import build_network
from convnet.models import VGG, CustomNet, ResNet, StageInfo
from convnet.models.trace import capture_outputs, trace

IMAGE = 64  # pixels: large enough for five halvings, small enough to run on a CPU


def _real_outputs(network: nn.Module, stages: list[StageInfo]) -> dict[str, torch.Tensor]:
    modules = dict(network.named_modules())
    images = torch.randn(2, 3, IMAGE, IMAGE)
    with torch.no_grad():
        return capture_outputs(
            network.eval(), {s.module: modules[s.module] for s in stages}, images
        )


def test_resnet18_declares_torchvisions_four_stages_without_its_stem() -> None:
    ours = ResNet("basic", [2, 2, 2, 2], 3, 10, IMAGE, stem="imagenet")
    nodes = {f"layer{i}": f"layer{i}" for i in range(1, 5)}
    reference = create_feature_extractor(torchvision.models.resnet18().eval(), nodes)
    with torch.no_grad():
        maps = reference(torch.randn(1, 3, IMAGE, IMAGE))
    assert [s.name for s in ours.feature_info] == ["stage1", "stage2", "stage3", "stage4"]
    assert [s.module for s in ours.feature_info] == list(nodes)
    assert [s.channels for s in ours.feature_info] == [m.shape[1] for m in maps.values()]
    assert [s.reduction for s in ours.feature_info] == [IMAGE // m.shape[-1] for m in maps.values()]
    assert [s.reduction for s in ours.feature_info] == [4, 8, 16, 32]
    assert ours.feature_info[1].first_conv == "layer2.0.conv1"


def test_vgg16_declares_five_stages_split_at_torchvisions_pools() -> None:
    with torch.device("meta"):  # layouts only: no weights to initialise
        ours = VGG(TORCHVISION_LAYERS["D"], 3, 10, IMAGE)
        features = torchvision.models.vgg16().features
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    assert [s.name for s in ours.feature_info] == [f"stage{i}" for i in range(1, 6)]
    # Each stage ends with the module before a pool; its first conv follows the pool before.
    assert [s.module for s in ours.feature_info] == [f"features.{i - 1}" for i in pools]
    assert [s.first_conv for s in ours.feature_info] == [
        f"features.{i + 1}" for i in [-1, *pools[:-1]]
    ]
    assert [s.channels for s in ours.feature_info] == [64, 128, 256, 512, 512]
    assert [s.reduction for s in ours.feature_info] == [1, 2, 4, 8, 16]


@pytest.mark.parametrize(
    "network",
    [
        ResNet("basic", [1, 1, 1, 1], 3, 10, IMAGE, widths=[4, 8, 8, 16], stem="imagenet"),
        ResNet("bottleneck", [1, 1], 3, 10, IMAGE, widths=[2, 4], preact=True),
        VGG([4, "M", 8, 8, "M", 8], 3, 10, IMAGE, batch_norm=True),
    ],
    ids=["resnet-imagenet-stem", "preact-bottleneck", "vgg-bn-no-final-pool"],
)
def test_declared_channels_and_reductions_are_what_a_real_forward_gives(network) -> None:
    outputs = _real_outputs(network, network.feature_info)
    for stage in network.feature_info:
        _, channels, height, width = outputs[stage.module].shape
        assert (channels, height, width) == (stage.channels, *[IMAGE // stage.reduction] * 2)
        assert isinstance(network.get_submodule(stage.first_conv), nn.Conv2d)


def test_resnet20_declares_three_stages_of_16_32_64_channels(train_config) -> None:
    network = build_network(train_config("model=resnet20", "data.image_size=32"))
    assert [(s.name, s.module) for s in network.feature_info] == [
        ("stage1", "layer1"),
        ("stage2", "layer2"),
        ("stage3", "layer3"),
    ]
    assert [s.channels for s in network.feature_info] == [16, 32, 64]
    assert [s.reduction for s in network.feature_info] == [1, 2, 4]


def test_a_custom_stack_declares_its_stages_at_each_resolution() -> None:
    conv = {"type": "conv", "filters": 4, "kernel_size": 3, "padding": "same"}
    layers = [conv, {"type": "max_pool"}, {**conv, "filters": 8, "strides": 2}, conv]
    network = CustomNet(layers, 3, 2, IMAGE, conv_defaults={"activation": "relu"})
    # Stage 2 starts at the strided conv and ends with the last conv's activation.
    assert [(s.name, s.first_conv, s.module) for s in network.feature_info] == [
        ("stage1", "layers.0_conv.0", "layers.0_conv.1"),
        ("stage2", "layers.2_conv.0", "layers.3_conv.1"),
    ]
    assert [(s.channels, s.reduction) for s in network.feature_info] == [(4, 1), (4, 4)]
    outputs = _real_outputs(network, network.feature_info)
    assert outputs["layers.3_conv.1"].shape[1:] == (4, IMAGE // 4, IMAGE // 4)


def test_the_meta_trace_gives_every_leaf_the_shapes_of_a_real_forward() -> None:
    network = torchvision.models.resnet18(num_classes=7).eval()
    images = torch.randn(2, 3, 40, 40)
    real: list[tuple[str, tuple[int, ...]]] = []
    handles = [
        module.register_forward_hook(lambda m, a, out, n=name: real.append((n, tuple(out.shape))))
        for name, module in network.named_modules()
        if next(module.children(), None) is None
    ]
    with torch.no_grad():
        network(images)
    for handle in handles:
        handle.remove()
    traced = trace(network, images.to("meta"))
    assert traced.error is None and traced.output.shape == (2, 7)
    assert [(c.name, tuple(c.output.shape)) for c in traced.leaves] == real
    assert not any(p.is_meta for p in network.parameters())  # its own weights untouched


def test_a_custom_stack_is_built_for_the_shapes_a_real_forward_gives() -> None:
    layers = [
        {"type": "conv", "filters": 4, "kernel_size": 5, "strides": 2},
        {"type": "residual", "layers": [{"type": "conv", "filters": 4, "kernel_size": 1}]},
        {"type": "avg_pool", "pool_size": 3},
        {"type": "flatten"},
        {"type": "dense", "units": 6},
    ]
    network = CustomNet(layers, 1, 3, [21, 17]).eval()
    x, real = torch.randn(2, 1, 21, 17), []
    with torch.no_grad():
        for layer in network.layers:
            x = layer(x)
            real.append(tuple(x.shape[1:]))
    assert network.shapes == real


def test_vgg_takes_any_size_and_the_build_path_refuses_a_too_small_image(train_config) -> None:
    with torch.device("meta"):
        VGG(TORCHVISION_LAYERS["D"], 3, 10, 8)  # the network itself is size-agnostic
    with pytest.raises(ValueError) as error:
        build_network(train_config("model=vgg16", "data.image_size=8"))
    assert str(error.value).startswith(
        "VGG cannot take image_size=[8, 8] with 3 channels: the feature map is 1x1 when it "
        "reaches layer 'features.23' (MaxPool2d), where the forward pass fails ("
    )
    assert str(error.value).endswith(
        "Fix: use images of at least [32, 32] (data.image_size) or a network that downsamples less."
    )
    with pytest.raises(ValueError, match=r"^VGG cannot take image_size=\[8, 8\] with 1 channel: "):
        build_network(train_config("model=vgg16", "data.image_size=8", "data.in_channels=1"))
