"""Every configs/model/*.yaml composes in the `model` group and instantiates a working model."""

import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torchvision.models.vgg import cfgs as TORCHVISION_LAYERS

from convnet.build import build_model
from convnet.models import VGG, CustomNet, ResNet

MODEL_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"
NAMES = sorted(path.stem for path in MODEL_CONFIGS.glob("*.yaml"))
# Forward passes of these take seconds on two CPU cores; they only instantiate by default.
LARGE = {"resnet50", "resnet101", "resnet110", "resnet152", "vgg19", "vgg19_bn"}

# A primary config standing in for configs/train.yaml: the data keys models interpolate.
ROOT_CONFIG = """
defaults:
  - model: small
  - _self_

data:
  in_channels: 3
  num_classes: 10
  image_size: [32, 32]
"""


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("configs")
    shutil.copytree(MODEL_CONFIGS, root / "model")
    (root / "root.yaml").write_text(ROOT_CONFIG)
    return root


def compose_model(config_dir: Path, name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name="root", overrides=[f"model={name}", *overrides])


def test_there_are_configs_for_every_documented_model():
    expected = {"small", "custom", "custom_allconv", "resnet9"}
    expected |= {f"vgg{depth}{suffix}" for depth in (11, 13, 16, 19) for suffix in ("", "_bn")}
    expected |= {f"resnet{depth}" for depth in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110)}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_model_config_instantiates_and_gives_logits(config_dir, name):
    cfg = compose_model(config_dir, name)
    assert cfg.model.in_channels == 3 and cfg.model.num_classes == 10
    if name in LARGE:
        with torch.device("meta"):
            model = build_model(cfg.model)
        assert isinstance(model, VGG | ResNet | CustomNet)
        return
    model = build_model(cfg.model)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LARGE))
def test_large_model_config_gives_logits(config_dir, name):
    model = build_model(compose_model(config_dir, name).model)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("name", "letter"), [("11", "A"), ("13", "B"), ("16", "D"), ("19", "E")])
def test_vgg_configs_hold_the_paper_layers(config_dir, name, letter):
    plain = compose_model(config_dir, f"vgg{name}").model
    with_norm = compose_model(config_dir, f"vgg{name}_bn").model
    assert OmegaConf.to_object(plain.layers) == TORCHVISION_LAYERS[letter]
    assert OmegaConf.to_object(with_norm.layers) == TORCHVISION_LAYERS[letter]
    assert (plain.batch_norm, with_norm.batch_norm) == (False, True)


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_resnet_configs_have_depth_minus_two_over_six_blocks(config_dir, depth):
    model = compose_model(config_dir, f"resnet{depth}").model
    assert list(model.layers) == [(depth - 2) // 6] * 3
    assert (model.shortcut, model.stem, list(model.widths)) == ("pad", "cifar", [16, 32, 64])


def test_imagenet_stem_override_loads_torchvision_weights(config_dir):
    import torchvision

    cfg = compose_model(
        config_dir,
        "resnet18",
        "model.stem=imagenet",
        "data.num_classes=1000",
        "data.image_size=224",
    )
    with torch.device("meta"):
        model = build_model(cfg.model)
        model.load_state_dict(torchvision.models.resnet18().state_dict(), strict=True)


def test_custom_config_is_the_seed_example(config_dir):
    model = build_model(compose_model(config_dir, "custom").model)
    assert isinstance(model, CustomNet)
    # The TensorFlow CNN tutorial's CIFAR-10 model: 122,570 parameters.
    assert sum(p.numel() for p in model.parameters()) == 122_570
    assert [name for name, _ in model.layers.named_children()][-2:] == ["6_dense", "7_dense"]


def test_custom_allconv_config_uses_strides_dilation_and_depthwise_convs(config_dir):
    model = build_model(compose_model(config_dir, "custom_allconv", "data.num_classes=7").model)
    assert model.layers.down1[0].stride == (2, 2)
    assert model.layers.dilated[0].dilation == (2, 2)
    assert model.layers.depthwise2[0].groups == 128
    assert model.layers.scores[0].out_channels == 7
    assert model.shapes[-1] == (7,)  # class scores already: no classifier appended
