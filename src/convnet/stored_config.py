"""A run config read from a file (a checkpoint's): checked to be data before anything is
built from it.

A checkpoint may come from anyone. Its stored config says which of convnet's networks,
data sources, optimizers and schedules to build, with plain values (numbers, strings,
lists); it never says what code to run. Hydra's `instantiate` would call any `_target_`
it finds, at any depth (a `builtins.min` of `pathlib.Path.write_text` calls under
`data.seed` runs as readily as the data module), so before a stored config reaches it:

- only the sections a checkpoint is rebuilt from are kept (`data`, `model`, `optimizer`,
  `scheduler`, `module`); the rest (trainer, callbacks, loggers, seed...) is dropped
  unread: what an entry point needs of it comes from its own config;
- a `_target_` may stand only where convnet's own configs put one (`model`, `data`,
  `data.source`, `optimizer`, `scheduler`), naming a target those configs use there (any
  torch.optim optimizer or LR scheduler class for `optimizer` and `scheduler`);
- no other Hydra key (`_args_`, `_recursive_`, `_convert_`) and no interpolation (`${...}`,
  which would call resolvers) appears anywhere: a stored config is already resolved;
- every value is a plain value; the plain values are then checked as a run config's are.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from convnet.checkpoints import CheckpointError
from convnet.checks import listed
from convnet.compose import CONFIG_DIR
from convnet.config import ConfigError, validate

# The sections a checkpoint's network, data and module are rebuilt from.
SECTIONS = ("data", "model", "optimizer", "scheduler", "module")
# Where convnet's configs put a `_target_`: the config group each path's targets come from.
TARGET_PATHS = {
    "model": "model",
    "data": "data",
    "data.source": "data",
    "optimizer": "optimizer",
    "scheduler": "scheduler",
}
# Hydra keys a stored config may hold, at a path that holds a `_target_`.
HYDRA_KEYS = {"_target_", "_partial_"}
PLAIN = (str, int, float, bool, type(None))
_TORCH_CLASS = re.compile(r"torch\.optim\.(lr_scheduler\.)?([A-Za-z][A-Za-z0-9]*)")


class UntrustedConfigError(CheckpointError):
    """A stored config that asks for code to run; nothing of it was built."""


def trusted_run_config(stored: Any, source: str | Path) -> DictConfig:
    """Return the part of a stored run config (read from `source`) that a checkpoint is
    rebuilt from, once every node is checked to be data; raise UntrustedConfigError else."""
    if not isinstance(stored, Mapping):
        raise UntrustedConfigError(
            f"{source}: the stored config is a {type(stored).__name__}, not a mapping of "
            "config keys. Use a checkpoint written by scripts/train.py."
        )
    kept = {key: stored[key] for key in SECTIONS if key in stored}
    problems = list(_problems(kept, ""))
    if problems:
        raise UntrustedConfigError(
            f"{source}: the stored config is not trusted as code: {listed(problems, 3, '; ')}"
            f". convnet rebuilds a checkpoint only from its own networks and data "
            "sources with plain values, so this file was not written by convnet's training "
            "or was altered afterwards. Nothing in it was run."
        )
    cfg = OmegaConf.create(kept)
    try:
        validate(cfg)
    except ConfigError as error:
        raise UntrustedConfigError(f"{source}: the stored config has bad values: {error}") from None
    return cfg


def _problems(node: Any, path: str) -> Iterator[str]:
    """Yield what in `node` (at config path `path`) is not plain data convnet can build."""
    if isinstance(node, Mapping):
        yield from _mapping_problems(node, path)
    elif isinstance(node, list | tuple):
        for index, item in enumerate(node):
            yield from _problems(item, f"{path}[{index}]")
    elif isinstance(node, str):
        if "${" in node:
            yield f"{path} holds the interpolation {node!r}"
    elif not isinstance(node, PLAIN):
        yield f"{path} holds a {type(node).__name__}, not a plain value"


def _mapping_problems(node: Mapping, path: str) -> Iterator[str]:
    keys = [key for key in node if not isinstance(key, str)]
    if keys:
        yield f"{path or 'the config'} has keys that are not strings: {keys[:3]}"
        return
    if "_target_" in node:
        allowed = allowed_targets(path)
        target = node["_target_"]
        if not allowed:
            yield f"{path} holds `_target_: {target}`, where convnet's configs put none"
        elif target not in allowed and not _torch_class(path, target):
            yield (
                f"{path}._target_={target!r} is not one of convnet's ({', '.join(sorted(allowed))})"
            )
    for key, value in node.items():
        child = f"{path}.{key}" if path else key
        if key.startswith("_") and key.endswith("_") and len(key) > 2:
            if key not in HYDRA_KEYS or "_target_" not in node:
                yield f"{child} is a Hydra instruction, which a stored config never holds"
            elif key == "_partial_" and not isinstance(value, bool):
                yield f"{child}={value!r} is not true or false"
            elif key == "_target_" and not isinstance(value, str):
                yield f"{child} is a {type(value).__name__}, not a class name"
            continue
        yield from _problems(value, child)


@functools.cache
def allowed_targets(path: str) -> frozenset[str]:
    """Return the `_target_`s convnet's own configs put at config path `path` (e.g.
    `data.source`), read from configs/<group>/*.yaml; empty where they put none."""
    group = TARGET_PATHS.get(path)
    if group is None:
        return frozenset()
    inner = path.split(".")[1:]
    targets = set()
    for file in sorted((CONFIG_DIR / group).glob("*.yaml")):
        node = yaml.safe_load(file.read_text()) or {}
        for key in inner:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get("_target_"), str):
            targets.add(node["_target_"])
    return frozenset(targets)


def _torch_class(path: str, target: Any) -> bool:
    """Return whether `target` names one of torch's optimizers (at `optimizer`) or LR
    schedulers (at `scheduler`): classes that take parameters and plain values only."""
    match = _TORCH_CLASS.fullmatch(str(target))
    if match is None or path not in ("optimizer", "scheduler"):
        return False
    is_scheduler = match.group(1) is not None
    if is_scheduler != (path == "scheduler"):
        return False
    module = torch.optim.lr_scheduler if is_scheduler else torch.optim
    base = torch.optim.lr_scheduler.LRScheduler if is_scheduler else torch.optim.Optimizer
    found = vars(module).get(match.group(2))
    return isinstance(found, type) and issubclass(found, base) and found is not base
