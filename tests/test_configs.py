"""Config composition and the errors a wrong config gives before any training."""

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, InstantiationException
from omegaconf import OmegaConf

from convnet.build import build_model
from convnet.config import ConfigError, validate
from convnet.data import ImageDataModule
from convnet.runs import NoRunToResumeError
from convnet.train import train
from tests.compose import CONFIGS, compose_config

DATA = sorted(p.stem for p in (CONFIGS / "data").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))
# imagefolder takes these from the user's folder when a run starts (tests/data/test_describe.py);
# composing alone leaves them null.
EXTRA = {
    "imagefolder": [
        "data.num_classes=5",
        "data.in_channels=3",
        "data.image_size=[64,64]",
        "data.mean=[0.5,0.5,0.5]",
        "data.std=[0.25,0.25,0.25]",
    ]
}


def test_the_zoo_and_the_data_sets_are_all_there() -> None:
    assert {"shapes", "digits", "cifar10", "cifar100", "mnist", "fashion_mnist"} <= set(DATA)
    assert {"small", "vgg16", "resnet18", "resnet20"} <= set(MODELS)


@pytest.mark.parametrize("data", DATA)
def test_every_model_composes_with_every_data_set(data: str, tmp_path: Path) -> None:
    for model in MODELS:
        cfg = compose_config(
            "train", [f"data={data}", f"model={model}", *EXTRA.get(data, [])], tmp_path
        )
        resolved = OmegaConf.to_container(cfg.model, resolve=True)
        assert resolved["in_channels"] == cfg.data.in_channels
        assert resolved["num_classes"] == cfg.data.num_classes
        assert list(resolved["image_size"]) == list(cfg.data.image_size)
        validate(cfg)


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("model", ["small", "resnet20", "vgg11_bn", "resnet18"])
def test_models_take_each_data_sets_images(data: str, model: str, tmp_path: Path) -> None:
    cfg = compose_config(
        "train", [f"data={data}", f"model={model}", *EXTRA.get(data, [])], tmp_path
    )
    network = build_model(cfg.model).eval()
    images = torch.zeros(2, cfg.data.in_channels, *cfg.data.image_size)
    with torch.no_grad():
        assert network(images).shape == (2, cfg.data.num_classes)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1"),
        ("optimizer.lr=0", "optimizer.lr=0"),
        ("data.batch_size=0", "data.batch_size=0"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0"),
        ("optimizer.weight_decay=-1", "optimizer.weight_decay=-1"),
        ("module.label_smoothing=1.0", "module.label_smoothing=1.0"),
        ("data.image_size=[32]", "data.image_size=[32]"),
        ("keep_host_memory=sometimes", "keep_host_memory='sometimes'"),
    ],
)
def test_bad_values_fail_before_training_naming_the_key(
    override: str, named: str, train_config, tmp_path: Path
) -> None:
    cfg = train_config(override)
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["model.num_classes=3"], ["model.num_classes=3 but data.num_classes=10", "score 3"]),
        (["model.in_channels=1"], ["model.in_channels=1 but data.in_channels=3", "1-channel"]),
        (
            ["model=resnet20", "model.image_size=[64,64]", "data.image_size=32"],
            ["model.image_size=[64, 64] but data.image_size=32", "model.image_size=32"],
        ),
    ],
)
def test_a_model_key_that_disagrees_with_the_data_fails_before_the_data_is_loaded(
    overrides: list[str], named: list[str], train_config, tmp_path: Path, monkeypatch
) -> None:
    loaded: list[str] = []
    monkeypatch.setattr(ImageDataModule, "setup", lambda self, stage: loaded.append(stage))
    with pytest.raises(ConfigError) as error:
        train(train_config(*overrides))
    for text in named:
        assert text in str(error.value)
    assert loaded == []
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_model_keys_equal_to_the_data_keys_pass(train_config) -> None:
    # As a size is written either way: 32 and [32, 32] are one size.
    validate(train_config("model.image_size=[32,32]", "data.image_size=32", "model.num_classes=10"))


def test_every_bad_value_is_reported_at_once(train_config) -> None:
    with pytest.raises(ConfigError) as error:
        validate(train_config("optimizer.lr=-1", "data.batch_size=0"))
    assert "optimizer.lr" in str(error.value) and "data.batch_size" in str(error.value)


def test_unknown_optimizer_name_lists_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("train", ["optimizer=adam"], tmp_path)
    message = str(error.value)
    assert "optimizer/adam" in message
    assert "adamw" in message and "sgd" in message


def test_unknown_model_name_lists_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigCompositionException, match="resnet20"):
        compose_config("train", ["model=resnet21"], tmp_path)


def test_image_too_small_for_the_network_fails_before_training(train_config, tmp_path) -> None:
    cfg = train_config("model=vgg16", "data.image_size=[8,8]")
    with pytest.raises(Exception, match=r"features\.\d+") as error:
        train(cfg)
    assert "32" in str(error.value)  # the smallest size that works
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_trainer_setting_lightning_refuses_fails_before_the_data_is_loaded(
    train_config, tmp_path, monkeypatch
) -> None:
    loaded: list[str] = []
    monkeypatch.setattr(ImageDataModule, "setup", lambda self, stage: loaded.append(stage))
    cfg = train_config("trainer.precision=bf17")
    with pytest.raises(InstantiationException, match="Precision 'bf17' is invalid"):
        train(cfg)
    assert loaded == []
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_resuming_with_no_run_to_resume_says_so(train_config, tmp_path) -> None:
    cfg = train_config("ckpt_path=last", output_dir=tmp_path / "runs" / "fresh")
    with pytest.raises(NoRunToResumeError, match="no run to resume"):
        train(cfg)


def test_missing_resume_checkpoint_is_named(train_config) -> None:
    cfg = train_config("ckpt_path=/nowhere/last.ckpt")
    with pytest.raises(ConfigError, match=r"/nowhere/last\.ckpt"):
        train(cfg)
