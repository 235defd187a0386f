"""Evaluation of a checkpoint on its data's val and test splits."""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from convnet.build import build_model, build_module, build_trainer
from convnet.checkpoints import CheckpointError, check_compatible, read_checkpoint
from convnet.config import ConfigError
from convnet.console import metrics_table, show
from convnet.data import ImageDataModule
from convnet.module import CONFIG_KEY
from convnet.stored_config import trusted_run_config

log = logging.getLogger(__name__)

SPLITS = ("val", "test")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Return a convnet checkpoint's contents, read without unpickling any objects."""
    checkpoint = read_checkpoint(path)
    if CONFIG_KEY not in checkpoint:
        raise CheckpointError(
            f"checkpoint {path} is not a convnet checkpoint (it holds no run config). "
            "Evaluate a checkpoint written by scripts/train.py."
        )
    return checkpoint


def run_config(
    checkpoint: dict[str, Any], data_overrides: DictConfig | None, source: str | Path
) -> DictConfig:
    """Return the checkpoint's run config (read from `source`), checked to hold data and no
    code (see convnet.stored_config), with `data_overrides` merged into its data."""
    cfg = trusted_run_config(checkpoint[CONFIG_KEY], source)
    if data_overrides:
        check_data_keys(cfg.data, data_overrides, source)
        cfg.data = OmegaConf.merge(cfg.data, data_overrides)
    return cfg


def check_data_keys(stored: DictConfig, overrides: DictConfig, source: str | Path) -> None:
    """Raise ConfigError naming a key of `overrides` (`data.*`, given to eval, predict,
    visualize or load) that the data config stored in the checkpoint at `source` lacks:
    merged in, it would reach the data module as an argument it does not take, or be
    ignored (an image folder's `source.root` given for digits)."""
    for key in _leaves(overrides):
        node, parts = stored, key.split(".")
        for depth, part in enumerate(parts):
            if isinstance(node, DictConfig) and part in node:
                node = node[part]
                continue
            section = ".".join(["data", *parts[:depth]])
            if not isinstance(node, DictConfig):
                raise ConfigError(
                    f"data.{key}: {section} of the checkpoint's config is a value, not a section "
                    f"with keys; set it whole: +{section}=..."
                )
            known = [str(name) for name in node if not str(name).startswith("_")]
            close = difflib.get_close_matches(part, known, n=2, cutoff=0.6)
            meant = " or ".join(f"{section}.{name}" for name in close)
            raise ConfigError(
                f"data.{key}: the data config stored in {source} has no key `{part}` in "
                f"{section} ({section} has {', '.join(known)})"
                + (f"; did you mean {meant}?" if close else "")
            )


def _leaves(node: Any, prefix: str = "") -> list[str]:
    """Return the dotted key of each value of config `node` that is not a section."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    keys = []
    for name, value in node.items():
        key = f"{prefix}{name}"
        keys += _leaves(value, f"{key}.") if isinstance(value, dict) and value else [key]
    return keys


def evaluate(cfg: DictConfig) -> dict[str, dict[str, float]]:
    """Evaluate `cfg.ckpt_path` on `cfg.splits`; return {split: {metric: value}}."""
    unknown = [split for split in cfg.splits if split not in SPLITS]
    if unknown:
        raise ConfigError(f"splits={list(cfg.splits)}: unknown {unknown}; allowed: {SPLITS}")
    checkpoint = load_checkpoint(cfg.ckpt_path)
    run = run_config(checkpoint, cfg.get("data"), cfg.ckpt_path)
    datamodule: ImageDataModule = instantiate(run.data)
    model = build_model(run.model, pretrained_weights=False)
    module = build_module(run, model)
    check_compatible(checkpoint["state_dict"], module, cfg.ckpt_path)
    module.load_state_dict(checkpoint["state_dict"])
    trainer = build_trainer(cfg)

    results: dict[str, dict[str, float]] = {}
    datamodule.setup("test")
    for split in cfg.splits:
        if split == "test" and not datamodule.has_test_split():
            log.info("the data source has no test split: skipping it")
            continue
        run_split = trainer.validate if split == "val" else trainer.test
        (metrics,) = run_split(module, datamodule=datamodule, verbose=False)
        results[split] = {k.split("/", 1)[1]: float(v) for k, v in metrics.items()}
    show(metrics_table(f"{cfg.ckpt_path}", results))
    output = Path(cfg.paths.output_dir) / "metrics.json"
    output.write_text(json.dumps(results, indent=2))
    log.info("metrics written to %s", output)
    return results
