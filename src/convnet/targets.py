"""The check of what a run config builds: every `_target_` imports, and every key of its node
is an argument the target takes, before the data is loaded or anything is built.

Hydra calls a target with its node's keys as keyword arguments. A key the target does not
take (`+optimizer.lrr=0.1`, a `momentum` left in a node that now builds AdamW) would only
fail when that object is built, with a TypeError and a traceback, after the data set has
been loaded; here it is named, with the key meant and what the target takes.

Only a run's own config (composed from configs/ and the command line) is checked: it names
the code the run builds. A stored config (a checkpoint's, an export's) is data and never
reaches this module (see convnet.stored_config).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Set
from typing import Any

from omegaconf import DictConfig, ListConfig

from convnet.checks import ConfigError

# Hydra's own keys of a node: they say how to build it, and are not passed.
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})
# Top-level sections never checked: Hydra's own (its launcher and sweeper are its plugins').
SKIPPED = frozenset({"hydra"})


Keys = Mapping[str, Set[str]]


def check_targets(
    cfg: DictConfig,
    read: Keys,
    given: Keys,
    options: Mapping[str, tuple[Callable, Set[str]]],
) -> None:
    """Raise ConfigError naming every `_target_` of `cfg` that cannot be imported and every key
    a target does not take (all at once). What the builders of the config do beyond Hydra's
    instantiate comes from them (convnet.build), by section:

    read: keys the builder reads from the section itself and never passes to its target.
    given: arguments the builder gives the target itself; a section that set them would be
        overridden, or the call would get the argument twice.
    options: sections without a `_target_` whose keys are the keyword arguments of a callable
        the builder calls: section -> (that callable, the arguments it gives it itself).
    """
    problems = []
    for path, node in target_nodes(cfg):
        problems += _node_problems(path, node, read.get(path, set()), given.get(path, set()))
    for section, (target, given) in options.items():
        node = cfg.get(section)
        if isinstance(node, DictConfig):
            named = f"{target.__module__}.{target.__qualname__}"
            problems += _unknown_keys(section, list(node), target, named, given)
    if problems:
        raise ConfigError.listing(
            problems,
            "Fix these keys on the command line or in configs/ (a `+key=value` adds a key; "
            "`~key` removes one).",
        )


def target_nodes(cfg: DictConfig) -> Iterator[tuple[str, DictConfig]]:
    """Yield (dotted path, node) for every node of `cfg` with a `_target_`, outside SKIPPED."""

    def walk(node: Any, path: str) -> Iterator[tuple[str, DictConfig]]:
        if isinstance(node, DictConfig):
            if "_target_" in node:
                yield path, node
            for key in node:
                if not path and key in SKIPPED:
                    continue
                child = node._get_node(key)
                yield from walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, ListConfig):
            for index in range(len(node)):
                yield from walk(node._get_node(index), f"{path}[{index}]")

    yield from walk(cfg, "")


def _node_problems(path: str, node: DictConfig, read: Set[str], given: Set[str]) -> list[str]:
    name = node.get("_target_")
    if not isinstance(name, str):
        return [f"{path}._target_={name!r} is not allowed: use a dotted import path"]
    try:
        target = locate(name)
    except (ImportError, AttributeError) as error:
        reason = (str(error).strip().splitlines() or [""])[0]
        return [
            f"{path}._target_={name} cannot be imported ({type(error).__name__}: {reason}): "
            "check its spelling, or install the package that has it"
        ]
    keys = [key for key in node if key not in read]
    return _unknown_keys(path, keys, target, name, given)


def locate(name: str) -> Any:
    """Return the object a dotted path names (`torch.optim.SGD`), importing its module as
    Hydra's instantiate does; raise ImportError or AttributeError when there is none.

    Hydra's own `hydra.utils.get_object` logs an error line of its own before raising.
    """
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        module_name = ".".join(parts[:end])
        try:
            found = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # Not a module: try the shorter path. A module that is there but imports one
            # that is not (a missing dependency) is the error to show.
            missing = error.name or ""
            if end > 1 and (module_name == missing or module_name.startswith(f"{missing}.")):
                continue
            raise
        for attribute in parts[end:]:
            found = getattr(found, attribute)
        return found
    raise ImportError(f"no module named {parts[0]!r}")


def _unknown_keys(
    path: str, keys: list[Any], target: Callable, named: str, given: Set[str]
) -> list[str]:
    """Return a line for each of `keys` (of the node at `path`) that `target` takes no
    keyword argument for, or that convnet gives it itself (`given`)."""
    accepted = keyword_arguments(target)
    if accepted is None:  # **kwargs, or no signature to read: any key may be right
        return []
    allowed = sorted(accepted - given - HYDRA_KEYS)
    problems = []
    for key in map(str, keys):
        if key in HYDRA_KEYS:
            continue
        if key in given:
            problems.append(f"{path}.{key}: convnet gives {named} its `{key}` itself; remove it")
        elif key not in accepted:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"did you mean {path}.{close[0]}?" if close else f"it takes {', '.join(allowed)}"
            problems.append(f"{path}.{key}: {named} takes no argument `{key}`; {hint}")
    return problems


def keyword_arguments(target: Callable) -> set[str] | None:
    """Return the names `target` can be called with as keywords, or None when it takes any
    (a **kwargs) or its signature cannot be read (a builtin without one)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    names = set()
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            names.add(parameter.name)
    return names
