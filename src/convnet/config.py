"""The check of a whole composed run config, made before anything is built or trained.

Each key is checked by the check its constructor uses (convnet.checks), so its message is
the same wherever it is caught. Written here are only what no single value check says: the
device a run asks for against the machine, and torch.compile's setting.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from convnet import checks, keys
from convnet.checks import ConfigError as ConfigError
from convnet.checks import refuse


def _compile_setting(value: Any, key: str) -> Any:
    if not isinstance(value, bool | DictConfig):
        raise refuse(
            key, value, "true, false, or torch.compile's options, e.g. {mode: max-autotune}"
        )
    return value


FIX = (
    "Fix these keys on the command line (e.g. `python scripts/train.py optimizer.lr=0.1`) "
    "or in configs/."
)

# key -> its check (convnet.checks), the one constructors of that key use too. Keys absent
# from a config, or null, are skipped.
RULES: dict[str, Callable[[Any, str], Any]] = {
    "optimizer.lr": checks.positive_number,
    "optimizer.weight_decay": checks.non_negative_number,
    "optimizer.momentum": checks.fraction,
    keys.BATCH_SIZE: checks.positive_int,
    keys.EVAL_BATCH_SIZE: checks.positive_int,
    keys.NUM_CLASSES: functools.partial(checks.int_at_least, minimum=2),
    keys.IN_CHANNELS: checks.positive_int,
    keys.IMAGE_SIZE: checks.to_pair,
    keys.CROP_PADDING: checks.non_negative_int,
    keys.NUM_WORKERS: checks.non_negative_int,
    "trainer.max_epochs": checks.positive_int,
    keys.LABEL_SMOOTHING: checks.fraction,
    "seed": checks.integer,
    "divergence_loss_factor": checks.positive_number,
    "keep_host_memory": checks.boolean,
    "compile": _compile_setting,
}


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming every bad value in `cfg` (all at once, not one per run)."""
    problems = []
    for key, check in RULES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        try:
            check(value, key)
        except ConfigError as error:
            problems.append(str(error))
    problems += _device_problems(cfg)
    problems += model_data_problems(cfg)
    if problems:
        raise ConfigError.listing(problems, FIX)


def check_model_fits_data(cfg: DictConfig) -> None:
    """Raise ConfigError if the model's data keys disagree with the data's (see
    model_data_problems): again once an image folder's null data keys are known."""
    problems = model_data_problems(cfg)
    if problems:
        raise ConfigError.listing(problems, FIX)


# The keys a model config takes from the data config (configs/model/*.yaml: ${data.<key>}),
# each with what the network would do otherwise.
DATA_KEYS = {
    "in_channels": lambda model, data: f"take {model}-channel images, the data's have {data}",
    "num_classes": lambda model, data: f"score {model} classes, the data has {data}",
    "image_size": lambda model, data: (
        f"be built and checked for {model[0]}x{model[1]} images, the data's are {data[0]}x{data[1]}"
    ),
}


def model_data_problems(cfg: DictConfig) -> list[str]:
    """Return a line for each of model.in_channels, model.num_classes, model.image_size that
    disagrees with its data key (both set), a network that would fail in its first step
    (a wrong number of channels or classes) or train on images it was not checked for."""
    problems = []
    for key, consequence in DATA_KEYS.items():
        model = OmegaConf.select(cfg, f"model.{key}", default=None)
        data = OmegaConf.select(cfg, f"data.{key}", default=None)
        if model is None or data is None:
            continue
        as_given = f"model.{key}={_shown(model)} but data.{key}={_shown(data)}"
        if key == "image_size":
            try:  # a value that is not a size is named by its own check
                model, data = checks.to_pair(model, key), checks.to_pair(data, key)
            except ConfigError:
                continue
        if model != data:
            problems.append(
                f"{as_given}: the network would {consequence(model, data)}. Set "
                f"model.{key}={_shown(OmegaConf.select(cfg, f'data.{key}'))}, or drop the "
                f"override: the model configs take it from data.{key}"
            )
    return problems


def _shown(value: Any) -> Any:
    """Return a config value as the command line writes it ([32, 32], not a ListConfig)."""
    if isinstance(value, ListConfig | DictConfig):
        return OmegaConf.to_container(value)
    return value


def _device_problems(cfg: DictConfig) -> list[str]:
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    if accelerator not in ("gpu", "cuda"):
        return []
    import torch  # only for a GPU run: the check of the rest needs no torch (seconds)

    if not torch.cuda.is_available():
        built = torch.version.cuda or "no CUDA"
        return [
            f"trainer.accelerator={accelerator} but no CUDA GPU is visible (torch built with "
            f"{built}; torch.cuda.is_available() is False): use trainer=cpu or "
            "trainer.accelerator=auto, or check the driver with nvidia-smi"
        ]
    return []
