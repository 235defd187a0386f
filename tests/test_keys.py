"""The config keys code names are keys of convnet's own configs."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from convnet import keys
from tests.compose import compose_config

NAMES = {name: value for name, value in vars(keys).items() if name.isupper()}


def test_every_named_key_is_a_key_of_the_composed_configs(tmp_path: Path) -> None:
    configs = [
        compose_config("train", [], tmp_path),
        compose_config("train", ["hparams_search=optuna"], tmp_path),
    ]
    missing = [
        key
        for key in NAMES.values()
        if not any(OmegaConf.select(cfg, key, default="<absent>") != "<absent>" for cfg in configs)
    ]
    assert missing == []
    assert len(set(NAMES.values())) == len(NAMES)  # each key named once
