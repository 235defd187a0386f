"""Checks of a composed run config, made before anything is built or trained."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

# convnet's own configs: the top-level configs/ folder beside src/.
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what is allowed."""


def _positive_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and value > 0


def _non_negative_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and value >= 0


def _positive_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


def _fraction(value: Any) -> bool:
    return _non_negative_number(value) and value < 1


def _image_size(value: Any) -> bool:
    if isinstance(value, ListConfig | list | tuple):
        return len(value) == 2 and all(_positive_int(v) for v in value)
    return _positive_int(value)


# key -> (check, what is allowed). Keys absent from a config are skipped.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "optimizer.lr": (_positive_number, "a positive number, e.g. 0.1"),
    "optimizer.weight_decay": (_non_negative_number, "a number >= 0, e.g. 5e-4"),
    "optimizer.momentum": (_fraction, "a number in [0, 1), e.g. 0.9"),
    "data.batch_size": (_positive_int, "a positive integer, e.g. 128"),
    "data.eval_batch_size": (_positive_int, "a positive integer, e.g. 1000"),
    "data.num_classes": (lambda v: _positive_int(v) and v >= 2, "an integer >= 2"),
    "data.in_channels": (_positive_int, "a positive integer (1 grey, 3 RGB)"),
    "data.image_size": (_image_size, "[height, width] of positive integers, e.g. [32, 32]"),
    "data.crop_padding": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    "data.num_workers": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    "trainer.max_epochs": (_positive_int, "a positive integer, e.g. 10"),
    "module.label_smoothing": (_fraction, "a number in [0, 1), e.g. 0.1"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "divergence_loss_factor": (_positive_number, "a positive number, e.g. 20, or null"),
    "keep_host_memory": (lambda v: isinstance(v, bool), "true or false"),
    "compile": (
        lambda v: isinstance(v, bool | DictConfig),
        "true, false, or torch.compile's options, e.g. {mode: max-autotune}",
    ),
}


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming every bad value in `cfg` (all at once, not one per run)."""
    problems = []
    for key, (check, allowed) in RULES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not check(value):
            shown = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
            problems.append(f"{key}={shown!r} is not allowed: use {allowed}")
    problems += _device_problems(cfg)
    if problems:
        raise ConfigError(
            "invalid config:\n  " + "\n  ".join(problems) + "\nFix these keys on the command "
            "line (e.g. `python scripts/train.py optimizer.lr=0.1`) or in configs/."
        )


def _device_problems(cfg: DictConfig) -> list[str]:
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        built = torch.version.cuda or "no CUDA"
        return [
            f"trainer.accelerator={accelerator} but no CUDA GPU is visible (torch built with "
            f"{built}; torch.cuda.is_available() is False): use trainer=cpu or "
            "trainer.accelerator=auto, or check the driver with nvidia-smi"
        ]
    return []
