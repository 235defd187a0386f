"""What every Hydra command of convnet shares: its configs, its help, its extras, its console.

A command's module (convnet.cli.train, .eval, ...) imports only Hydra, OmegaConf and convnet's
light modules at the top, so that `--help`, `--cfg job` and a config mistake answer before
torch and Lightning are imported (they take seconds); the task function imports them once the
config has been composed and checked.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import hydra
import yaml

from convnet.cli.override_keys import check_override_keys
from convnet.cli.quiet import quiet_third_party
from convnet.compose import CONFIG_DIR, CONFIG_PATH, VERSION_BASE, group_options
from convnet.runs import register_resolvers

Task = TypeVar("Task", bound=Callable[..., Any])

# Config choices that need a Hydra plugin outside the core install: (group, option) -> the
# plugin's module and convnet's extra that installs it.
PLUGINS = {
    ("hparams_search", "optuna"): ("hydra_plugins.hydra_optuna_sweeper", "sweeps"),
    ("hydra/sweeper", "optuna"): ("hydra_plugins.hydra_optuna_sweeper", "sweeps"),
    ("hydra/launcher", "parallel"): ("hydra_plugins.hydra_joblib_launcher", "parallel"),
    ("hydra/launcher", "joblib"): ("hydra_plugins.hydra_joblib_launcher", "parallel"),
    ("hydra/launcher", "slurm"): ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/launcher", "submitit_slurm"): ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/launcher", "submitit_local"): ("hydra_plugins.hydra_submitit_launcher", "slurm"),
}
HELP_FLAGS = ("-h", "--help")


def hydra_command(config_name: str) -> Callable[[Task], Callable[[], Any]]:
    """Return a decorator that makes `task(cfg)` the Hydra app over convnet's config
    `config_name` (found in the installed package, wherever the command runs), with convnet's
    own `--help`, a missing extra named before Hydra starts, and a quiet console."""

    def decorate(task: Task) -> Callable[[], Any]:
        app = hydra.main(
            config_path=CONFIG_PATH, config_name=config_name, version_base=VERSION_BASE
        )
        run = app(task)

        @functools.wraps(task)
        def main() -> Any:
            arguments = sys.argv[1:]
            if any(flag in arguments for flag in HELP_FLAGS):
                # Hydra's own help composes every group option (seconds); this one reads the
                # config folder. `--hydra-help` still shows Hydra's flags.
                print(command_help(Path(sys.argv[0]).name, task.__doc__ or "", config_name))
                return None
            require_plugins(arguments)
            register_resolvers()
            check_override_keys(config_name, arguments)
            quiet_third_party()
            return run()

        return main

    return decorate


def require_plugins(arguments: Sequence[str]) -> None:
    """Raise SystemExit naming the extra to install when an override picks a sweeper or a
    launcher whose Hydra plugin is not installed (Hydra would only say the option is missing)."""
    for argument in arguments:
        group, _, option = argument.lstrip("+~").removeprefix("override ").partition("=")
        needed = PLUGINS.get((group.strip("/"), option))
        if needed is None:
            continue
        module, extra = needed
        if importlib.util.find_spec(module) is None:
            package = module.rpartition(".")[2].replace("_", "-")
            raise SystemExit(
                f"{argument} needs Hydra's plugin {package}, which is not installed: "
                f"pip install 'convnet[{extra}]' (in a checkout: pip install -e '.[{extra}]'), "
                "or 'convnet[all]' for every sweeper and launcher."
            )


def config_groups(config_name: str) -> dict[str, list[str]]:
    """Return each config group `config_name` picks from (its defaults list, then Hydra's
    launchers) with the options convnet ships, the default one first."""
    primary = yaml.safe_load((CONFIG_DIR / f"{config_name}.yaml").read_text()) or {}
    groups: dict[str, str | None] = {}
    for entry in primary.get("defaults", []):
        if isinstance(entry, dict):
            (group, choice), *_ = entry.items()
            if not group.startswith("override") and group != "hydra":
                groups[group] = choice
    launchers = CONFIG_DIR / "hydra" / "launcher"
    if launchers.is_dir():
        groups["hydra/launcher"] = None
    listed = {}
    for group, default in groups.items():
        options = group_options(group)
        if default in options:
            options = [f"{default} (default)", *(o for o in options if o != default)]
        listed[group] = options
    return listed


def groups_help(config_name: str) -> str:
    """Return the config groups of `config_name` and their options, a line each."""
    groups = config_groups(config_name)
    width = max((len(group) for group in groups), default=0)
    return "\n".join(
        f"  {group:<{width}}  {', '.join(options)}" for group, options in groups.items()
    )


def keys_help(config_name: str) -> str:
    """Return the top-level keys of `config_name` with their values (`???`: must be given)."""
    primary = yaml.safe_load((CONFIG_DIR / f"{config_name}.yaml").read_text()) or {}
    keys = [
        f"{key}=({'required' if value == '???' else value})"
        for key, value in primary.items()
        if key != "defaults" and not isinstance(value, dict)
    ]
    return textwrap.fill(" ".join(keys), 92, initial_indent="  ", subsequent_indent="  ")


def command_help(prog: str, doc: str, config_name: str) -> str:
    """Return the help of a Hydra command: what it does, how to call it, its keys and groups."""
    summary = doc.strip().splitlines()[0] if doc.strip() else ""
    return (
        f"usage: {prog} [group=option ...] [key=value ...] [-m] [--cfg job] [--hydra-help]\n\n"
        f"{summary}\n\n"
        f"Keys (and their defaults):\n{keys_help(config_name)}\n\n"
        f"Config groups (pick one with group=option; any value with key=value), from\n"
        f"{CONFIG_DIR}/{config_name}.yaml:\n{groups_help(config_name)}\n\n"
        "  --cfg job      print the composed config and stop\n"
        "  -m             a sweep: comma-separated values, or hparams_search=optuna\n"
        "  --config-dir DIR  add your own configs (models, data sets, experiments) to these\n"
        "  --hydra-help   Hydra's own flags"
    )
