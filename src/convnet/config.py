"""The check of a whole composed run config, made before anything is built or trained.

Each key is checked by the check its constructor uses (convnet.checks), so its message is
the same wherever it is caught. Written here are only what no single value check says: the
device a run asks for against the machine, and torch.compile's setting.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from convnet import checks, keys
from convnet.checks import ConfigError as ConfigError
from convnet.checks import refuse


def _compile_setting(value: Any, key: str) -> Any:
    if not isinstance(value, bool | DictConfig):
        raise refuse(
            key, value, "true, false, or torch.compile's options, e.g. {mode: max-autotune}"
        )
    return value


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
    if problems:
        raise ConfigError.listing(
            problems,
            "Fix these keys on the command line (e.g. `python scripts/train.py "
            "optimizer.lr=0.1`) or in configs/.",
        )


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
