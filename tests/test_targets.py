"""The check of what a run config builds: each `_target_` imports and takes its node's keys."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from convnet.build import MODULE_GIVEN, check_buildable
from convnet.config import ConfigError
from convnet.module import ImageClassifier
from convnet.targets import keyword_arguments, locate
from tests.compose import CONFIGS, compose_config, train_script

GROUPS = ("model", "data", "optimizer", "scheduler", "trainer", "callbacks", "logger")
OPTIONS = [
    f"{group}={path.stem}"
    for group in (*GROUPS, "experiment", "debug", "hparams_search")
    for path in sorted((CONFIGS / group).glob("*.yaml"))
]


@pytest.mark.parametrize("option", OPTIONS)
def test_every_shipped_config_passes_the_check(option: str, tmp_path: Path) -> None:
    # Each key of every node is one its target takes (else Hydra's instantiate would fail).
    check_buildable(compose_config("train", [option], tmp_path))


def _build(section: str, cfg) -> None:
    """Build the optimizer or the schedule of `cfg` as convnet.module does."""
    optimizer = instantiate(cfg.optimizer)([{"params": [torch.nn.Parameter(torch.zeros(2))]}])
    if section == "scheduler":
        instantiate(cfg.scheduler)(optimizer, total_steps=10)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (
            ["+optimizer.lrr=0.1"],
            "optimizer.lrr: torch.optim.SGD takes no argument `lrr`; did you mean optimizer.lr?",
        ),
        (
            ["optimizer=adamw", "+optimizer.momentum=0.9"],
            "optimizer.momentum: torch.optim.AdamW takes no argument `momentum`; it takes "
            "amsgrad, betas,",
        ),
        (
            ["+scheduler.pct_strat=0.3"],
            "scheduler.pct_strat: convnet.schedules.one_cycle takes no argument `pct_strat`; "
            "did you mean scheduler.pct_start?",
        ),
    ],
)
def test_a_key_the_target_does_not_take_is_named_with_the_one_meant(
    overrides: list[str], named: str, tmp_path: Path
) -> None:
    cfg = compose_config("train", overrides, tmp_path)
    with pytest.raises(ConfigError, match="invalid config") as raised:
        check_buildable(cfg)
    assert named in str(raised.value)
    # The reference: building that object as convnet does fails on the same key.
    section = overrides[-1].strip("+").split(".")[0]
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        _build(section, cfg)
    check_buildable(compose_config("train", overrides[:-1], tmp_path))
    _build(section, compose_config("train", overrides[:-1], tmp_path))


def _refusal(overrides: list[str], tmp_path: Path) -> str:
    """Return what check_buildable says of the train config with `overrides`."""
    with pytest.raises(ConfigError) as raised:
        check_buildable(compose_config("train", overrides, tmp_path))
    return str(raised.value)


def test_every_bad_key_of_the_run_is_reported_at_once(tmp_path: Path) -> None:
    message = _refusal(
        ["+trainer.max_epoch=3", "+model.filter=8", "+module.label_smothing=0.1"], tmp_path
    )
    assert (
        "trainer.max_epoch: lightning.Trainer takes no argument `max_epoch`; did you mean "
        "trainer.max_epochs?"
    ) in message
    assert "model.filter: convnet.models.VGG takes no argument `filter`" in message
    assert "module.label_smothing: convnet.module.ImageClassifier takes no argument " in message
    assert "did you mean module.label_smoothing?" in message


def test_an_argument_convnet_gives_itself_may_not_be_set(tmp_path: Path) -> None:
    message = _refusal(
        ["+optimizer.params=[1]", "+trainer.callbacks=[]", "+module.num_classes=3"], tmp_path
    )
    for key in ("optimizer.params", "trainer.callbacks", "module.num_classes"):
        assert f"{key}: convnet gives" in message


def test_a_target_taking_any_keyword_passes_any_key(tmp_path: Path) -> None:
    # Lightning's TensorBoardLogger hands its **kwargs to the SummaryWriter.
    cfg = compose_config("train", ["+logger.tensorboard.flush_secs=30"], tmp_path)
    check_buildable(cfg)
    assert keyword_arguments(instantiate(cfg.logger.tensorboard).__class__) is None


def test_the_keys_read_by_convnet_pass_though_the_network_does_not_take_them(tmp_path) -> None:
    cfg = compose_config("train", ["model=resnet20", "model.pretrained=weights.pt"], tmp_path)
    assert "pretrained" not in inspect.signature(locate(cfg.model._target_)).parameters
    check_buildable(cfg)


def test_the_arguments_convnet_gives_the_module_are_its_parameters() -> None:
    # A stale name here would let a `module` key through that build_module also passes.
    assert set(inspect.signature(ImageClassifier).parameters) >= MODULE_GIVEN


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("convnet.models.Nope", "AttributeError: module 'convnet.models' has no attribute 'Nope'"),
        ("no_such_package.Net", "ModuleNotFoundError: No module named 'no_such_package'"),
    ],
)
def test_a_target_that_cannot_be_imported_is_named(target: str, said: str, tmp_path) -> None:
    message = _refusal([f"model._target_={target}"], tmp_path)
    assert f"model._target_={target} cannot be imported ({said})" in message


def test_a_module_missing_a_dependency_names_the_dependency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_nets.py").write_text("import not_installed_package\nclass Net: ...\n")
    # A missing package whose name begins the module's: still the package that is missing.
    (tmp_path / "my_nets2.py").write_text("import my_nets2_extra\nclass Net: ...\n")
    (tmp_path / "my").mkdir()
    (tmp_path / "my" / "zoo.py").write_text("import my.nothing\nclass Net: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("my_nets", "my_nets2", "my", "my.zoo"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ModuleNotFoundError, match="not_installed_package"):
        locate("my_nets.Net")
    with pytest.raises(ModuleNotFoundError, match="my_nets2_extra"):
        locate("my_nets2.Net")
    with pytest.raises(ModuleNotFoundError, match=r"'my\.nothing'"):
        locate("my.zoo.Net")
    assert locate("torch.optim.SGD") is torch.optim.SGD
    assert locate("torch.nn.functional.relu") is torch.nn.functional.relu


@pytest.mark.slow  # a training command, torch and Lightning imported
def test_training_with_an_unknown_key_stops_before_the_data_with_one_line(tmp_path) -> None:
    done = train_script(tmp_path, "+optimizer.lrr=0.1", "data=digits", "hydra.run.dir=run")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert "optimizer.lrr: torch.optim.SGD takes no argument `lrr`; did you mean " in lines[-2]
    assert "Traceback" not in done.stderr
    assert "convnet.data.datamodule" not in done.stdout + done.stderr  # no data loaded
    assert not (tmp_path / "run" / "config.yaml").exists()
