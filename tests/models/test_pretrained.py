"""model.pretrained: a state_dict file loaded strictly into the network as it is built."""

import argparse
import os
import pickle
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from convnet.build import build_model
from convnet.models.pretrained import PretrainedError
from convnet.module import ImageClassifier
from convnet.train import train
from tests.compose import compose_config

# What unpickling a refused object would have done: nothing may ever land here.
RAN: list[str] = []


class Payload:
    """An object whose unpickling would run code (here, only append to RAN)."""

    def __reduce__(self):
        return RAN.append, ("unpickled",)


def model_config(tmp_path: Path, *overrides: str):
    return compose_config("train", list(overrides), tmp_path / "config").model


def imagenet_resnet18(tmp_path: Path, pretrained: Path, classes: int = 1000) -> nn.Module:
    cfg = model_config(
        tmp_path,
        "model=resnet18",
        "model.stem=imagenet",
        f"data.num_classes={classes}",
        "data.image_size=224",
        f"model.pretrained={pretrained}",
    )
    return build_model(cfg)


@pytest.fixture(scope="module")
def torchvision_resnet18(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    """Return torchvision's resnet18 (random weights, no download) and its saved state_dict."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18-f37072fd.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


def test_torchvision_weights_give_torchvision_logits(torchvision_resnet18, tmp_path: Path):
    reference, path = torchvision_resnet18
    ours = imagenet_resnet18(tmp_path, path).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), rtol=0, atol=0)


def test_a_convnet_checkpoint_loads_its_network(tmp_path: Path):
    trained = build_model(model_config(tmp_path, "model=custom"))
    module = ImageClassifier(trained, torch.optim.SGD, None, num_classes=10, config={})
    path = tmp_path / "last.ckpt"
    # A Lightning checkpoint: the LightningModule's state_dict, its network under `model.`.
    torch.save({"epoch": 3, "state_dict": module.state_dict()}, path)
    loaded = build_model(model_config(tmp_path, "model=custom", f"model.pretrained={path}"))
    for key, tensor in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_other_weights_fail_listing_keys_and_guessing_the_network(tmp_path: Path):
    vgg = build_model(model_config(tmp_path, "model=vgg11"))
    path = tmp_path / "vgg11.pth"
    torch.save(vgg.state_dict(), path)
    with pytest.raises(PretrainedError) as error:
        imagenet_resnet18(tmp_path, path)
    message = str(error.value)
    assert f"model.pretrained={path} does not fit the ResNet" in message
    assert "missing: conv1.weight, bn1.weight" in message and "(and 117 more)" in message
    assert "unexpected: features.0.weight" in message
    assert "seems to hold a vgg11 with 10 classes" in message


def test_another_class_count_fails_naming_the_shapes(torchvision_resnet18, tmp_path: Path):
    with pytest.raises(PretrainedError) as error:
        imagenet_resnet18(tmp_path, torchvision_resnet18[1], classes=10)
    message = str(error.value)
    assert "fc.weight: file (1000, 512) vs model (10, 512)" in message
    assert "fc.bias: file (1000,) vs model (10,)" in message
    assert "missing" not in message and "unexpected" not in message
    assert "resnet18 with the ImageNet stem and 1000 classes" in message


def test_a_missing_file_fails_before_training(train_config, tmp_path: Path):
    cfg = train_config(f"model.pretrained={tmp_path}/resnet18.pth")
    with pytest.raises(
        PretrainedError, match=rf"model.pretrained={tmp_path}/resnet18.pth: no such"
    ):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_folder_given_as_the_weights_names_the_weight_files_in_it(tmp_path: Path):
    folder = tmp_path / "weights"
    folder.mkdir()
    with pytest.raises(PretrainedError, match=r"weights is a folder, not a state_dict file$"):
        build_model(compose_config("train", [f"model.pretrained={folder}"], tmp_path).model)
    (folder / "resnet18-f37072fd.pth").write_bytes(b"")
    (folder / "notes.txt").write_text("")
    with pytest.raises(PretrainedError) as refused:
        build_model(compose_config("train", [f"model.pretrained={folder}"], tmp_path).model)
    assert str(refused.value) == (
        f"model.pretrained={folder} is a folder, not a state_dict file: give one of its files "
        "(resnet18-f37072fd.pth)"
    )


@pytest.mark.parametrize("content", [b"", b"not a torch file", "half"])
def test_a_truncated_or_foreign_file_fails_naming_it(torchvision_resnet18, tmp_path, content):
    path = tmp_path / "weights.pth"
    whole = torchvision_resnet18[1].read_bytes()
    path.write_bytes(whole[: len(whole) // 2] if content == "half" else content)
    with pytest.raises(PretrainedError, match=f"{path} is truncated or not a PyTorch file"):
        imagenet_resnet18(tmp_path, path)


class Settings:
    """A plain object, as training scripts save next to their weights."""


def _save_torch_zip(content: object, path: Path) -> None:
    torch.save(content, path)


def _save_torch_protocol_4(content: object, path: Path) -> None:
    torch.save(content, path, pickle_protocol=4)


def _save_torch_legacy(content: object, path: Path) -> None:
    torch.save(content, path, _use_new_zipfile_serialization=False)


def _save_plain_pickle(content: object, path: Path) -> None:
    with open(path, "wb") as file:
        pickle.dump(content, file)


@pytest.mark.parametrize(
    "save", [_save_torch_zip, _save_torch_protocol_4, _save_torch_legacy, _save_plain_pickle]
)
@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (Payload(), "builtins.getattr"),  # pickled as getattr(RAN, "append")
        (Settings(), "tests.models.test_pretrained.Settings"),
        (os.system, "system"),  # torch: "Trying to load unsupported GLOBAL ... is blocked"
        (argparse.Namespace(lr=0.1), "argparse.Namespace"),
    ],
    ids=["code-running-reduce", "object", "blocked-module", "namespace"],
)
def test_a_file_with_pickled_objects_is_refused_unread(tmp_path: Path, save, payload, named):
    path = tmp_path / "weights.pth"
    save({"conv1.weight": torch.zeros(1), "payload": payload}, path)
    with pytest.raises(PretrainedError) as error:
        imagenet_resnet18(tmp_path, path)
    message = str(error.value)
    assert f"model.pretrained={path} holds pickled Python objects, not tensors alone" in message
    assert named in message
    assert "torch.save(network.state_dict(), path)" in message
    assert "truncated" not in message and "again" not in message
    assert RAN == []


def test_tensors_pickled_with_another_protocol_are_told_how_to_save_them(tmp_path: Path):
    path = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path, pickle_protocol=4)
    with pytest.raises(PretrainedError) as error:
        imagenet_resnet18(tmp_path, path)
    message = str(error.value)
    assert f"{path} is a complete pickle (protocol 4)" in message
    assert "torch.save(network.state_dict(), path)" in message and "truncated" not in message


def test_a_network_on_the_meta_device_only_checks_the_file(torchvision_resnet18, tmp_path):
    # scripts/summary.py builds on the meta device: nothing to copy, but a misfit still fails.
    with torch.device("meta"):
        network = imagenet_resnet18(tmp_path, torchvision_resnet18[1])
        with pytest.raises(PretrainedError, match=r"fc.weight: file \(1000, 512\)"):
            imagenet_resnet18(tmp_path, torchvision_resnet18[1], classes=10)
    assert network.fc.weight.is_meta
