"""A checkpoint's stored config is data: no entry point runs code that a file asks for."""

from __future__ import annotations

import copy
import pathlib
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from convnet.build import build_model, resolved_config
from convnet.evaluate import evaluate
from convnet.module import CONFIG_KEY
from convnet.stored_config import UntrustedConfigError, allowed_targets, trusted_run_config
from convnet.train import train
from convnet.visualize import visualize
from tests.compose import REPO, TINY_SHAPES, compose_config
from tests.scripts import run_script

QUIET = ["callbacks=minimal", "callbacks.rich_progress_bar=null"]


class _WritesMarker:
    """Unpickling it writes the marker file: what a shell command in a pickle would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return pathlib.Path.write_text, (self.marker, "code from a checkpoint ran")


def chained_payload(marker: Path) -> dict[str, Any]:
    """Return the node of the attack: only allowed callables (builtins.min, pathlib, numpy),
    chained so that instantiating it writes a pickle and loads it, which writes `marker`."""
    pickle_file = marker.with_suffix(".pkl")
    return {
        "_target_": "builtins.min",
        "_args_": [
            [
                {
                    "_target_": "pathlib.Path.write_bytes",
                    "self": {"_target_": "pathlib.Path", "_args_": [str(pickle_file)]},
                    "data": pickle.dumps(_WritesMarker(marker)),
                },
                {"_target_": "numpy.load", "file": str(pickle_file), "allow_pickle": True},
            ]
        ],
    }


def test_the_chained_payload_runs_code_when_instantiated(tmp_path: Path) -> None:
    # The attack is real: Hydra's instantiate runs it, as eval and visualize once did.
    marker = tmp_path / "marker"
    instantiate(chained_payload(marker))
    assert marker.read_text() == "code from a checkpoint ran"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A finished tiny run: its last checkpoint's path and contents."""
    root = tmp_path_factory.mktemp("trained")
    cfg = compose_config("train", [*TINY_SHAPES, "debug=fast", "test=false", *QUIET], root)
    train(cfg)
    path = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    return {"path": path, "checkpoint": torch.load(path, weights_only=True)}


def tampered(trained: dict[str, Any], folder: Path, edit) -> Path:
    """Return the path of a copy of the trained checkpoint whose stored config `edit` changed."""
    checkpoint = copy.deepcopy(trained["checkpoint"])
    edit(checkpoint[CONFIG_KEY])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tampered.ckpt"
    torch.save(checkpoint, path)
    return path


def put(config: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted `key` (list items as `name[index]`) of a plain nested config to `value`."""
    *parents, last = key.replace("[", ".[").split(".")
    node: Any = config
    for part in parents:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    if last.startswith("["):
        node[int(last[1:-1])] = value
    else:
        node[last] = value


# Where an attacker might hide a node; each must be refused before anything is built.
PAYLOAD_KEYS = [
    "data.seed",
    "data.source.num_train",
    "data.mean",
    "data.mean[1]",
    "model.layers",
    "model.layers[0]",
    "model.in_channels",
    "optimizer.lr",
    "scheduler.pct_start",
    "module.label_smoothing",
    "data.extra_key",
]


@pytest.mark.parametrize("key", PAYLOAD_KEYS)
def test_a_payload_under_any_stored_key_is_refused_naming_it(
    trained: dict[str, Any], tmp_path: Path, key: str
) -> None:
    stored = copy.deepcopy(trained["checkpoint"][CONFIG_KEY])
    put(stored, key, chained_payload(tmp_path / "marker"))
    with pytest.raises(UntrustedConfigError, match="not trusted as code") as raised:
        trusted_run_config(stored, "tampered.ckpt")
    assert key.split("[")[0] in str(raised.value)
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("model._target_", "builtins.exec", "model._target_='builtins.exec'"),
        ("data.source._target_", "pathlib.Path.write_text", "data.source._target_"),
        ("data.source._target_", "convnet.models.VGG", "data.source._target_"),
        ("optimizer._target_", "torch.optim.lr_scheduler.StepLR", "optimizer._target_"),
        ("optimizer._target_", "torch.optim.Optimizer", "optimizer._target_"),
        ("scheduler._target_", "torch.load", "scheduler._target_"),
        ("optimizer._args_", [1], "optimizer._args_ is a Hydra instruction"),
        ("model._recursive_", True, "model._recursive_"),
        ("optimizer._partial_", "yes", "optimizer._partial_"),
        ("data.batch_size", "${oc.env:HOME}", "interpolation"),
        ("model.layers[0].filters", "${oc.env:HOME}", "model.layers[0].filters"),
        ("module", {"_target_": "os.getcwd"}, "module holds `_target_: os.getcwd`"),
    ],
)
def test_targets_hydra_keys_and_interpolations_convnet_never_writes_are_refused(
    trained: dict[str, Any], key: str, value: Any, named: str
) -> None:
    stored = copy.deepcopy(trained["checkpoint"][CONFIG_KEY])
    if key.startswith("model.layers"):
        stored["model"] = {**stored["model"], "layers": [{"type": "conv", "filters": 8}]}
    put(stored, key, value)
    with pytest.raises(UntrustedConfigError) as raised:
        trusted_run_config(stored, "tampered.ckpt")
    assert named in str(raised.value)


@pytest.mark.parametrize("key", ["seed", "trainer", "callbacks.model_checkpoint", "hydra"])
def test_what_a_checkpoint_is_not_rebuilt_from_is_dropped_unread(
    trained: dict[str, Any], tmp_path: Path, key: str
) -> None:
    stored = copy.deepcopy(trained["checkpoint"][CONFIG_KEY])
    stored.setdefault("hydra", {})
    put(stored, key, chained_payload(tmp_path / "marker"))
    trusted = trusted_run_config(stored, "tampered.ckpt")
    assert set(trusted) == {"data", "model", "optimizer", "scheduler", "module"}
    assert not (tmp_path / "marker").exists()


def test_a_stored_config_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(UntrustedConfigError, match="is a list, not a mapping"):
        trusted_run_config([{"_target_": "os.system"}], "odd.ckpt")


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=resnet20", "data=digits"],
        ["model=custom", "optimizer=adamw", "scheduler=cosine"],
        ["model=resnet9", "scheduler=constant"],
        ["model=vgg11_bn", "data=cifar10"],
        # As training stores it: with the keys the folder gave (convnet.data.describe).
        [
            "model=small",
            "data=imagefolder",
            "data.num_classes=3",
            "data.in_channels=1",
            "data.image_size=[32,32]",
            "data.mean=[0.3]",
            "data.std=[0.4]",
        ],
        [
            "model=resnet18",
            "data=mnist",
            "optimizer._target_=torch.optim.Adam",
            "~optimizer.momentum",
            "~optimizer.nesterov",
        ],
    ],
)
def test_what_training_stores_is_trusted_and_rebuilds_the_same_network(
    tmp_path: Path, overrides: list[str]
) -> None:
    cfg = compose_config("train", overrides, tmp_path)
    stored = resolved_config(cfg)
    trusted = trusted_run_config(stored, "run.ckpt")
    assert set(trusted) <= set(stored)
    assert "trainer" not in trusted and "callbacks" not in trusted  # never read
    assert OmegaConf.to_container(trusted.model) == stored["model"]
    assert OmegaConf.to_container(trusted.data) == stored["data"]
    torch.manual_seed(0)
    expected = build_model(cfg.model, pretrained_weights=False)
    torch.manual_seed(0)
    rebuilt = build_model(trusted.model, pretrained_weights=False)
    assert expected.state_dict().keys() == rebuilt.state_dict().keys()
    assert all(torch.equal(expected.state_dict()[k], v) for k, v in rebuilt.state_dict().items())


def test_allowed_targets_are_those_of_convnets_own_configs() -> None:
    assert {"convnet.models.VGG", "convnet.models.ResNet", "convnet.models.CustomNet"} == set(
        allowed_targets("model")
    )
    assert "convnet.data.folder.ImageFolderSource" in allowed_targets("data.source")
    assert allowed_targets("data.seed") == frozenset()


def test_eval_and_visualize_refuse_a_tampered_checkpoint_before_building_anything(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    path = tampered(trained, tmp_path, lambda c: put(c, "data.seed", chained_payload(marker)))
    eval_cfg = compose_config("eval", [f"ckpt_path={path}"], tmp_path, tmp_path / "eval")
    with pytest.raises(UntrustedConfigError, match=r"data\.seed"):
        evaluate(eval_cfg)
    picture_cfg = compose_config("visualize", [f"ckpt_path={path}"], tmp_path, tmp_path / "vis")
    with pytest.raises(UntrustedConfigError, match=r"data\.seed"):
        visualize(picture_cfg)
    assert not marker.exists()
    assert not marker.with_suffix(".pkl").exists()
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_resume_and_pretrained_use_only_the_weights_of_a_tampered_checkpoint(
    trained: dict[str, Any], tmp_path: Path, train_config
) -> None:
    marker = tmp_path / "marker"

    def everywhere(stored: dict[str, Any]) -> None:
        for key in ("data.seed", "optimizer.lr", "module.label_smoothing"):
            put(stored, key, chained_payload(marker))

    path = tampered(trained, tmp_path / "bad", everywhere)
    cfg = train_config(
        "debug=fast", "test=false", "trainer.max_epochs=2", f"ckpt_path={path}", *QUIET
    )
    metrics = train(cfg)
    assert metrics["train/loss"] > 0
    pretrained = train_config(f"model.pretrained={path}")
    weights = build_model(pretrained.model).state_dict()
    stored = trained["checkpoint"]["state_dict"]
    assert all(torch.equal(weights[k], stored[f"model.{k}"]) for k in weights)
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("script", ["eval.py", "visualize.py"])
def test_scripts_say_in_one_line_that_the_stored_config_is_not_trusted(
    trained: dict[str, Any], tmp_path: Path, script: str
) -> None:
    marker = tmp_path / "marker"
    path = tampered(trained, tmp_path, lambda c: put(c, "data.seed", chained_payload(marker)))
    done = run_script(
        [REPO / "scripts" / script, f"ckpt_path={path}", f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("UntrustedConfigError: ")
    assert "data.seed" in lines[0] and "not trusted as code" in lines[0]
    assert not marker.exists()
