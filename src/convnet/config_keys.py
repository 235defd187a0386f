"""Overrides of keys a config does not have, each named with the key meant or the keys there are.

Hydra refuses `optimizer.lrr=0.1` (no such key) with "To append to your config use
+optimizer.lrr=0.1", which would only hand `lrr` to the optimizer. Here the config is
composed without each such override in turn, and the section it names is searched for the
key meant. A key under a list or a null (`model.layers.x=64`), which Hydra lets OmegaConf
refuse with a traceback, is named the same way. The commands (convnet.cli.override_keys) and
the sweep check (convnet.sweeps.check) name such keys so.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from convnet.checks import ConfigError
from convnet.compose import CONFIG_DIR, compose_config, group_options

# Hydra's message for an override of a key that is not there (hydra/_internal/config_loader_impl).
_NOT_THERE = re.compile(r"Could not override '([^']+)'")
_NO_GROUP = "No match in the defaults list"
# At most this many keys are looked for (a composition each).
MAX_KEYS = 10

Compose = Callable[[list[str]], DictConfig]


def missing_keys_error(lines: Sequence[str], config_name: str) -> ConfigError:
    """Return the error naming the keys of `lines` (missing_key_lines) a command over the config
    `config_name` ends with."""
    return ConfigError.listing(
        lines,
        "Fix these keys on the command line "
        f"(`python scripts/{config_name}.py --cfg job` prints every key there is).",
    )


def compose_or_explain(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """Return convnet's config `config_name` with `overrides` (convnet.compose); raise
    ConfigError naming every override of a key the config does not have when that is why it
    does not compose (Hydra's own error otherwise)."""
    compose = functools.partial(compose_config, config_name)
    try:
        return compose(list(overrides))
    # Hydra's error, or OmegaConf's it lets through (a key under a list, a group's number).
    except (ConfigCompositionException, ValueError, AssertionError) as error:
        lines = missing_key_lines(compose, overrides)
        if lines:
            raise missing_keys_error(lines, config_name) from error
        raise


def missing_key_lines(compose: Compose, overrides: Sequence[str]) -> list[str]:
    """Return a line naming each override of a key the config `compose(overrides)` does not
    have (none when the config composes, or fails to for another reason)."""
    missing, cfg = missing_keys(compose, overrides)
    if cfg is None:
        return []
    return [_problem(override, key, cfg) for override, key in missing]


def missing_keys(
    compose: Compose, overrides: Sequence[str]
) -> tuple[list[tuple[str, str]], DictConfig | None]:
    """Return (override, the key missing from the config) for each override of a key that is
    not there, and the config composed without them (None when it does not compose for
    another reason, which Hydra reports)."""
    remaining, missing = list(overrides), []
    for _ in range(MAX_KEYS + 1):
        try:
            return missing, compose(remaining)
        except ConfigCompositionException as error:
            found = _NOT_THERE.match(str(error))
            cause = error.__cause__
            not_a_key = isinstance(cause, ConfigAttributeError | ConfigKeyError)
            # A group choice (`model=resnet20`) where the config picks from no such group.
            not_a_group = _NO_GROUP in str(error)
            if not found or not (not_a_key or not_a_group):
                return missing, None
            override = next((o for o in remaining if o.split("=", 1)[0] == found.group(1)), None)
            if override is None or len(missing) == MAX_KEYS:
                return missing, None
            remaining.remove(override)
            full_key = cause.full_key if not_a_key else None
            missing.append((override, str(full_key or found.group(1))))
        except Exception:  # an override that does not parse...: Hydra says so when it runs
            # ...except a key under a list or a null, whose OmegaConf error (a ValueError, an
            # AssertionError) Hydra lets through as a traceback.
            under = _group_given_a_value(remaining) or _under_a_value(compose, remaining)
            if under is None or len(missing) == MAX_KEYS:
                return missing, None
            remaining.remove(under[0])
            missing.append(under)
    return missing, None


def _group_given_a_value(overrides: Sequence[str]) -> tuple[str, str] | None:
    """Return (override, its group) for the last of `overrides` that gives a config group a
    number or a boolean (`optimizer=5`), which Hydra refuses with a traceback; None if none."""
    for override in reversed(overrides):
        key, given, _ = override.partition("=")
        group = key.lstrip("+~")
        if not given or "." in group or not (CONFIG_DIR / group).is_dir():
            continue
        try:
            parsed = OverridesParser.create().parse_override(override).value()
        except Exception:  # an override that does not parse: Hydra says so when it runs
            continue
        if isinstance(parsed, bool | int | float):
            return override, group
    return None


def _under_a_value(compose: Compose, overrides: Sequence[str]) -> tuple[str, str] | None:
    """Return (override, its key down to the part that cannot be entered) for the last of
    `overrides` that sets a key under what is not a section in the config composed without
    it (`model.layers.x=1`: a list's item by name; anything under a null); None if none does."""
    for override in reversed(overrides):
        key = override.split("=", 1)[0].lstrip("+")
        if "=" not in override or "." not in key or key.startswith("~"):
            continue
        try:
            cfg = compose([other for other in overrides if other is not override])
        except Exception:  # the others do not compose either: not this one's doing alone
            continue
        blocked = _blocked_at(cfg, key.split("."))
        if blocked is not None:
            return override, blocked
    return None


def _blocked_at(cfg: DictConfig, parts: Sequence[str]) -> str | None:
    """Return the dotted key of `parts` down to the first part that cannot be entered (one
    under a value that is not a section, or a list's item by name), None if all can be."""
    node: object = cfg
    for depth, part in enumerate(parts):
        if isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node[int(part)] if depth < len(parts) - 1 else None
        elif isinstance(node, DictConfig):
            if part not in node:  # a key that is not there: Hydra names it (missing_keys)
                return None
            try:
                node = node[part] if depth < len(parts) - 1 else None
            except Exception:  # an interpolation that resolves only in a run
                return None
        else:
            return ".".join(parts[: depth + 1])
    return None


def _problem(override: str, missing: str, cfg: DictConfig) -> str:
    """Return the line naming the key of `override`, whose part `missing` (dotted: its first
    part that is not in the config) `cfg` does not have, with the key meant, or the keys there
    are and the `+` that adds it (right where a section's keys are optional, as a custom
    layer's are; the object the section builds then checks it, see convnet.targets)."""
    key = override.split("=", 1)[0]
    section, _, name = missing.rpartition(".")
    node = OmegaConf.select(cfg, section) if section else cfg
    where = section or f"the {OmegaConf.select(cfg, 'hydra.job.config_name')} config"
    if isinstance(node, ListConfig):
        return (
            f"{key}: {where} is a list: set one of its {len(node)} items by its number "
            f"({section}.0=...) or all of it ({section}=[...])"
        )
    if node is None and section == "hydra.sweeper.params":
        return (
            f"{key}: {section} is empty with Hydra's basic sweeper; to sweep {name}, give "
            f"its values with -m: -m {name}=a,b"
        )
    if not isinstance(node, DictConfig):
        nothing = " (null)" if node is None else ""
        return f"{key}: {where} is not a section with keys{nothing}"
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    if missing in choices:  # `optimizer=5`: a group's config is picked by its name
        options = ", ".join(group_options(missing))
        return (
            f"{override}: {missing} is a config group: pick one of its configs by name ({options})"
        )
    if not section and isinstance(node.get(name), DictConfig):  # eval's `data=digits`
        empty = not node[name]
        how = f"+{name}.<key>=value" if empty else f"{name}.<key>=value"
        told = " (it is empty here: the checkpoint's stored config gives the rest)"
        return (
            f"{override}: `{name}` is a section of {where}, not a config group to pick from: "
            f"set its keys with {how}{told if empty else ''}"
        )
    hidden = ("hydra",) if not section else ()  # Hydra's own section: `--hydra-help`
    keys = [str(e) for e in node if not str(e).startswith("_") and str(e) not in hidden]
    if not keys:  # a section the command fills in, e.g. eval's data (merged into the stored)
        return f"{key}: {where} has no keys to override here; to add this one: +{override}"
    close = difflib.get_close_matches(name, keys, n=2, cutoff=0.6)
    if close:
        meant = " or ".join(f"{section}.{entry}" if section else entry for entry in close)
        return f"{key}: {where} has no key `{name}`; did you mean {meant}?"
    choice = OmegaConf.select(cfg, f"hydra.runtime.choices.{section}") if section else None
    owner = f"{section}={choice}" if isinstance(choice, str) else where
    adding = f"; to add it: +{override}" if section else ""
    return f"{key}: {where} has no key `{name}` ({owner} has {', '.join(keys)}){adding}"
