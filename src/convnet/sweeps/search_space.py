"""Optuna search-space parts that depend on other choices (hydra.sweeper.custom_search_space)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from convnet.config import ConfigError

if TYPE_CHECKING:
    from optuna.trial import Trial

RANGES_KEY = "optimizer_ranges"


def optimizer_ranges(cfg: DictConfig, trial: Trial) -> None:
    """Suggest the chosen optimizer's keys (lr, weight_decay...) log-uniformly from
    `optimizer_ranges.<optimizer>`: useful learning rates and weight decays differ 10-100x
    between SGD and AdamW, so one range for both would waste most trials."""
    name = trial.params.get("optimizer") or cfg.hydra.runtime.choices.optimizer
    ranges = OmegaConf.select(cfg, f"{RANGES_KEY}.{name}")
    if ranges is None:
        raise ConfigError(
            f"{RANGES_KEY}.{name} is missing: optimizer={name} was chosen but has no ranges; "
            f"add e.g. `{RANGES_KEY}: {{{name}: {{lr: [1.0e-3, 0.1]}}}}` to the search config"
        )
    for key, bounds in ranges.items():
        if not (OmegaConf.is_list(bounds) and len(bounds) == 2 and 0 < bounds[0] < bounds[1]):
            shown = OmegaConf.to_container(bounds) if OmegaConf.is_config(bounds) else bounds
            raise ConfigError(
                f"{RANGES_KEY}.{name}.{key}={shown!r} is not allowed: use [low, high] with "
                "0 < low < high (searched on a log scale)"
            )
        trial.suggest_float(f"optimizer.{key}", float(bounds[0]), float(bounds[1]), log=True)
