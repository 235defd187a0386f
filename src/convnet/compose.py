"""Where convnet's configs live, and run configs composed from them as the scripts compose them.

Every composition outside a running Hydra app goes through `compose_config` (the benchmark,
scripts/summary.py, the tests), and the sweep check composes its jobs through
`compose_in_running_hydra`; CONFIG_PACKAGE is the one place that says where the configs are:
the package convnet.configs, which pyproject.toml maps onto the repository's top-level
configs/ folder, in a wheel as in a checkout (`pip install -e .`).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from convnet.runs import register_resolvers

# convnet's own configs, as a package (found by import, so from wherever convnet is
# installed), as Hydra's search path entry (`@hydra.main(config_path=CONFIG_PATH)`) and as a
# folder on disk (a wheel's files, or the checkout's configs/ in an editable install).
CONFIG_PACKAGE = "convnet.configs"
CONFIG_PATH = f"pkg://{CONFIG_PACKAGE}"
CONFIG_DIR = Path(str(files(CONFIG_PACKAGE)))
# The Hydra defaults the scripts' @hydra.main asks for.
VERSION_BASE = "1.3"


def group_options(group: str) -> list[str]:
    """Return the configs convnet ships in config group `group` (configs/<group>/*.yaml)."""
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def compose_config(
    config_name: str = "train",
    overrides: Sequence[str] = (),
    output_dir: Path | None = None,
    multirun: bool = False,
) -> DictConfig:
    """Return the config `scripts/<config_name>.py <overrides>` would run with, Hydra's node
    included, composed from convnet's configs.

    output_dir: the run folder (made here): the config then reads as it does inside that
        run (hydra.runtime.output_dir, paths.output_dir, `${hydra:...}` interpolations).
        Without it nothing is written and the config's run folder stays unresolved.
    multirun: the config a sweep (`-m`) starts from, as Hydra composes it before its sweeper
        runs: swept overrides are left out, the others applied.
    """
    overrides = list(overrides)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        overrides = [f"hydra.run.dir={output_dir}", *overrides]
    # A previous composition in this process (a test, a benchmark arm) leaves Hydra set up.
    GlobalHydra.instance().clear()
    with initialize_config_module(version_base=VERSION_BASE, config_module=CONFIG_PACKAGE):
        if multirun:
            # The compose API composes a single run only; this is what it calls, for a sweep.
            register_resolvers()
            cfg = GlobalHydra.instance().hydra.compose_config(
                config_name, overrides, run_mode=RunMode.MULTIRUN
            )
        else:
            cfg = compose_in_running_hydra(config_name, overrides)
    if output_dir is not None:
        _as_in_run(cfg, output_dir)
    # ${hydra:...} interpolations (paths.* read runtime.cwd, run folders, config choices)
    # read this, as in a run Hydra starts.
    HydraConfig().set_config(cfg)
    return cfg


def compose_in_running_hydra(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """Return the config `config_name` with `overrides`, Hydra's node included, composed by
    the Hydra already set up (a Hydra callback's: its search path, the user's additions
    included, and its global state are left as they are)."""
    register_resolvers()
    return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def _as_in_run(cfg: DictConfig, output_dir: Path) -> None:
    """Fill in what Hydra fills in when it starts a run in `output_dir`."""
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(Path.cwd())
        cfg.hydra.job.num = 0
        cfg.paths.output_dir = str(output_dir)
