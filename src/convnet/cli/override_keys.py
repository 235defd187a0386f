"""An override of a key the config does not have, named with the key meant, before Hydra runs.

Hydra refuses `optimizer.lrr=0.1` (no such key) with "To append to your config use
+optimizer.lrr=0.1", which would only hand `lrr` to the optimizer. A command of convnet
composes its config once before Hydra does (0.1-0.2 s, no torch) and, when key=value
overrides name keys the config lacks, ends naming each, with the key it most likely means or
the keys that are there. Whatever else that composition finds is left to Hydra to report as
it does, and a sweep (`-m`) is left to the sweep check, which composes each job.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path

from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from convnet.compose import compose_config

# Hydra's message for an override of a key that is not there (hydra/_internal/config_loader_impl).
_NOT_THERE = re.compile(r"Could not override '([^']+)'")
# Hydra flags after which the composition here would not be Hydra's (another primary config,
# a rerun, a sweep) or none is made (shell completion, --info).
_OTHER_COMPOSITIONS = ("multirun", "config_path", "config_name", "experimental_rerun")
_NO_COMPOSITION = ("info", "shell_completion", "version", "hydra_help")
# At most this many keys are looked for (a composition each).
MAX_KEYS = 10


def check_override_keys(config_name: str, arguments: Sequence[str]) -> None:
    """Raise SystemExit naming every key=value override in `arguments` (a command line of a
    convnet command over the config `config_name`) whose key its config does not have."""
    parsed = _parse(arguments)
    if parsed is None:
        return
    overrides, config_dir = parsed
    search = [f"hydra.searchpath=[file://{Path(config_dir).resolve()}]"] if config_dir else []
    missing, cfg = missing_keys(config_name, [*search, *overrides])
    if not missing or cfg is None:
        return
    lines = [_problem(override, key, cfg) for override, key in missing]
    raise SystemExit(
        "ConfigError: invalid config:\n  " + "\n  ".join(lines) + "\nFix these keys on the "
        "command line (`--cfg job` prints every key there is). A key the config does not have "
        "is added with `+key=value`, when the object its section builds takes it."
    )


def _parse(arguments: Sequence[str]) -> tuple[list[str], str | None] | None:
    """Return the overrides and --config-dir of a command line, or None when it is not one
    this module composes as Hydra would (see _OTHER_COMPOSITIONS) or Hydra will refuse."""
    try:  # Hydra's own parser of its command line: what it reads is what is composed here
        from hydra._internal.utils import get_args_parser
    except ImportError:  # a Hydra release that moved it: Hydra's own message, unchanged
        return None
    parser = get_args_parser()
    parser.error = _refuse  # type: ignore[method-assign]  # no usage printed, no exit here
    try:
        parsed = parser.parse_args(list(arguments))
    except ValueError:
        return None
    if any(getattr(parsed, name, None) for name in (*_OTHER_COMPOSITIONS, *_NO_COMPOSITION)):
        return None
    return list(parsed.overrides), parsed.config_dir


def _refuse(message: str) -> None:
    raise ValueError(message)


def missing_keys(
    config_name: str, overrides: Sequence[str]
) -> tuple[list[tuple[str, str]], DictConfig | None]:
    """Return (override, the key missing from the config) for each override of a key that is
    not there, and the config composed without them (None when it does not compose for
    another reason, which Hydra reports)."""
    remaining, missing = list(overrides), []
    for _ in range(MAX_KEYS + 1):
        try:
            return missing, compose_config(config_name, remaining)
        except ConfigCompositionException as error:
            found = _NOT_THERE.match(str(error))
            cause = error.__cause__
            if not found or not isinstance(cause, ConfigAttributeError | ConfigKeyError):
                return missing, None
            override = next((o for o in remaining if o.split("=", 1)[0] == found.group(1)), None)
            if override is None or len(missing) == MAX_KEYS:
                return missing, None
            remaining.remove(override)
            missing.append((override, str(cause.full_key or found.group(1))))
    return missing, None


def _problem(override: str, missing: str, cfg: DictConfig) -> str:
    """Return the line naming `override`, whose key `missing` (dotted: its first part that is
    not in the config) `cfg` does not have, with the key meant or those there are."""
    section, _, name = missing.rpartition(".")
    node = OmegaConf.select(cfg, section) if section else cfg
    where = section or "the config"
    if not isinstance(node, DictConfig):
        return f"{override}: {where} is not a section with keys"
    keys = [str(key) for key in node if not str(key).startswith("_")]
    close = difflib.get_close_matches(name, keys, n=2, cutoff=0.6)
    if close:
        meant = " or ".join(f"{section}.{key}" if section else key for key in close)
        return f"{override}: {where} has no key `{name}`; did you mean {meant}?"
    choice = OmegaConf.select(cfg, f"hydra.runtime.choices.{section}") if section else None
    owner = f"{section}={choice}" if isinstance(choice, str) else where
    return f"{override}: {where} has no key `{name}`; {owner} has {', '.join(keys)}"
