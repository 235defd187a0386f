"""An override of a key the config does not have, named with the key meant, before Hydra runs.

A command of convnet composes its config once before Hydra does (0.1-0.2 s, no torch) and,
when key=value overrides name keys the config lacks, ends naming each (convnet.config_keys)
instead of Hydra's advice to add the key with `+`. Whatever else that composition finds is
left to Hydra to report as it does. A sweep (`-m`) is checked as Hydra composes it before
its sweeper starts, the swept overrides left out; the sweep check composes each job, swept
values included, and names such keys the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from convnet.compose import compose_config
from convnet.config_keys import missing_key_lines, missing_keys_error

# Hydra flags after which the composition here would not be Hydra's (another primary config,
# a rerun) or none is made (shell completion, --info).
_OTHER_COMPOSITIONS = ("config_path", "config_name", "experimental_rerun")
_NO_COMPOSITION = ("info", "shell_completion", "version", "hydra_help")


def check_override_keys(config_name: str, arguments: Sequence[str]) -> None:
    """Raise SystemExit naming every key=value override in `arguments` (a command line of a
    convnet command over the config `config_name`) whose key its config does not have."""
    parsed = _parse(arguments)
    if parsed is None:
        return
    overrides, config_dir, multirun = parsed
    search = [f"hydra.searchpath=[file://{Path(config_dir).resolve()}]"] if config_dir else []
    compose = functools.partial(compose_config, config_name, multirun=multirun)
    lines = missing_key_lines(compose, [*search, *overrides])
    if lines:
        # Outside the task, where one_line_errors would show it: the same line, by hand.
        raise SystemExit(f"ConfigError: {missing_keys_error(lines, config_name)}")


def _parse(arguments: Sequence[str]) -> tuple[list[str], str | None, bool] | None:
    """Return the overrides, --config-dir and -m of a command line, or None when it is not
    one this module composes as Hydra would (see _OTHER_COMPOSITIONS) or Hydra will refuse."""
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
    return list(parsed.overrides), parsed.config_dir, bool(parsed.multirun)


def _refuse(message: str) -> None:
    raise ValueError(message)
