"""Where convnet's configs live, and run configs composed from them as the scripts compose them.

Every composition outside a running Hydra app goes through `compose_config` (the benchmark,
scripts/summary.py, the tests), and the sweep check composes its jobs through
`compose_in_running_hydra`; CONFIG_DIR is the one place that says where the configs are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from convnet.runs import register_resolvers

# convnet's own configs: the top-level configs/ folder beside src/ (what scripts/*.py name
# as config_path="../configs").
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
# The Hydra defaults the scripts' @hydra.main asks for.
VERSION_BASE = "1.3"


def compose_config(
    config_name: str = "train", overrides: Sequence[str] = (), output_dir: Path | None = None
) -> DictConfig:
    """Return the config `scripts/<config_name>.py <overrides>` would run with, Hydra's node
    included, composed from CONFIG_DIR.

    output_dir: the run folder (made here): the config then reads as it does inside that
        run (hydra.runtime.output_dir, paths.output_dir, `${hydra:...}` interpolations).
        Without it nothing is written and the config's run folder stays unresolved.
    """
    overrides = list(overrides)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        overrides = [f"hydra.run.dir={output_dir}", *overrides]
    # A previous composition in this process (a test, a benchmark arm) leaves Hydra set up.
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base=VERSION_BASE, config_dir=str(CONFIG_DIR)):
        cfg = compose_in_running_hydra(config_name, overrides)
    if output_dir is not None:
        _as_in_run(cfg, output_dir)
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
    # ${hydra:...} interpolations (run directory, config choices) read this.
    HydraConfig().set_config(cfg)
