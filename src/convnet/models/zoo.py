"""convnet's networks by name, as timm's `create_model`: the names are configs/model/*.yaml.

    create_model("resnet20")                            # shapes' 3 channels, 10 classes, 32x32
    create_model("resnet20", data="cifar100")           # another data config's
    create_model("vgg11_bn", num_classes=5, image_size=64, dropout=0.2)
    create_model("outputs/export/runs/<run>/model.json")   # a safetensors export, with weights

`in_channels`, `num_classes` and `image_size` are the data config's (they reach the model
through interpolation, as in a run: a custom stack's last dense layer follows num_classes);
every other keyword overrides a key of the model config.
"""

from __future__ import annotations

import difflib
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from convnet.checks import ConfigError
from convnet.compose import CONFIG_DIR, compose_config
from convnet.config import DATA_KEYS, validate

EXPORT_SUFFIX = ".json"


def model_names() -> list[str]:
    """Return the names create_model takes: the configs of configs/model/."""
    return sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml"))


def data_names() -> list[str]:
    """Return the data configs a model's in_channels, num_classes and image_size come from."""
    return sorted(path.stem for path in (CONFIG_DIR / "data").glob("*.yaml"))


def model_config(name: str, data: str = "shapes", **overrides: Any) -> DictConfig:
    """Return the resolved model config of configs/model/<name>.yaml on data config `data`,
    with `overrides` (model keys, and in_channels, num_classes, image_size) applied."""
    _check_choice("model", name, model_names())
    _check_choice("data", data, data_names())
    cfg = compose_config("train", [f"model={name}", f"data={data}"])
    unknown = sorted(set(overrides) - set(cfg.model) - set(DATA_KEYS))
    if unknown:
        known = [key for key in dict.fromkeys([*DATA_KEYS, *cfg.model]) if key[0] != "_"]
        close = {key: difflib.get_close_matches(key, known, n=1) for key in unknown}
        meant = [f"{key} -> {found[0]}" for key, found in close.items() if found]
        hint = f" (did you mean {', '.join(meant)}?)" if meant else ""
        raise ConfigError(
            f"create_model({name!r}): unknown keys {unknown}{hint}; configs/model/{name}.yaml "
            f"takes {', '.join(known)}"
        )
    with open_dict(cfg):
        for key, value in overrides.items():
            (cfg.data if key in DATA_KEYS else cfg.model)[key] = value
    validate(cfg)
    unset = [key for key in DATA_KEYS if cfg.data.get(key) is None]
    if unset:
        # An image folder's run reads them from its images; here there are none to read.
        given = ", ".join(f"{key}=..." for key in unset)
        raise ConfigError(
            f"create_model({name!r}, data={data!r}): data={data} leaves {', '.join(unset)} to "
            f"the images a run reads, and there are none here: give them, "
            f"create_model({name!r}, {given})"
        )
    return OmegaConf.create(OmegaConf.to_container(cfg.model, resolve=True))


def create_model(name: str, data: str = "shapes", **overrides: Any) -> nn.Module:
    """Return the network `name` builds: a model config's (see model_config; `pretrained`
    may name a state_dict file to start from), or, for the model.json of a safetensors
    export, the exported network with its weights (eval mode)."""
    if name.endswith(EXPORT_SUFFIX):
        if overrides or data != "shapes":
            raise ConfigError(
                f"create_model({name!r}) rebuilds an export as it was exported: give no data "
                f"or overrides (got {sorted(overrides) or data}), or a model name: "
                f"{', '.join(model_names())}"
            )
        # Imported here: convnet.export builds networks through convnet.build, which
        # imports this package.
        from convnet.export import load_export

        return load_export(name).network
    # Imported here for the same reason (convnet.build imports convnet.models).
    from convnet.build import build_model

    return build_model(model_config(name, data, **overrides))


def _check_choice(group: str, name: Any, names: list[str]) -> None:
    if name not in names:
        raise ConfigError(
            f"{group}={name!r} is not one of convnet's configs/{group}/*.yaml: {', '.join(names)}"
        )
