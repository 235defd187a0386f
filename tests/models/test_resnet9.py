"""configs/model/resnet9.yaml is David Page's DAWNBench ResNet-9, written as a custom stack."""

from pathlib import Path

import torch
from torch import nn

from convnet.build import build_model
from convnet.models import CustomNet
from tests.compose import compose_config


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.res1, self.res2 = conv_bn(channels, channels), conv_bn(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res2(self.res1(x))


class Mul(nn.Module):
    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def page_resnet9(num_classes: int = 10) -> nn.Sequential:
    """Page's network ("How to train your ResNet 4: Architecture"), logits scaled by 0.125."""
    return nn.Sequential(
        conv_bn(3, 64),  # prep
        conv_bn(64, 128), nn.MaxPool2d(2), Residual(128),  # layer1
        conv_bn(128, 256), nn.MaxPool2d(2),  # layer2
        conv_bn(256, 512), nn.MaxPool2d(2), Residual(512),  # layer3
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(512, num_classes, bias=False),
        Mul(0.125),
    )  # fmt: skip


def resnet9(tmp_path: Path, *overrides: str) -> nn.Module:
    return build_model(compose_config("train", ["model=resnet9", *overrides], tmp_path).model)


def test_resnet9_config_is_pages_network_weight_for_weight(tmp_path: Path) -> None:
    ours, reference = resnet9(tmp_path, "data=cifar10").eval(), page_resnet9().eval()
    assert isinstance(ours, CustomNet)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters()) == 6_573_120
    theirs = reference.state_dict()
    assert [v.shape for v in ours.state_dict().values()] == [v.shape for v in theirs.values()]
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs.values(), strict=True)))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = ours(images)
        torch.testing.assert_close(logits, reference(images), rtol=0, atol=0)
    assert logits.shape == (2, 10)
    assert "layers.layer3_residual.body.res2.0.weight" in ours.state_dict()


def test_resnet9_takes_grey_28x28_mnist_images(tmp_path: Path) -> None:
    # data=mnist resizes to 32x32 by default; its native size is asked for here.
    model = resnet9(tmp_path, "data=mnist", "data.image_size=[28,28]").eval()
    assert model.layers.prep[0].in_channels == 1
    # 28 -> 14 -> 7 -> 3 before the global max-pool.
    assert model.shapes[-4] == (512, 3, 3)
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
