"""Run configs composed with Hydra's compose API, as the scripts would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from convnet.runs import register_resolvers

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"

register_resolvers()

# Small and quick, yet the same code path as a real run.
TINY_SHAPES = [
    "data.source.num_train=640",
    "data.source.num_val=320",
    "data.source.num_test=320",
    "data.batch_size=64",
    "data.eval_batch_size=320",
]


def compose_config(
    config_name: str, overrides: list[str], tmp_path: Path, output_dir: Path | None = None
) -> DictConfig:
    """Return the config `scripts/<config_name>.py` would run with, writing into tmp_path."""
    output_dir = output_dir or tmp_path / "run"
    output_dir.mkdir(parents=True, exist_ok=True)
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose(
            config_name=config_name,
            return_hydra_config=True,
            overrides=[f"paths.root_dir={tmp_path}", f"hydra.run.dir={output_dir}", *overrides],
        )
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


def train_script(cwd: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python scripts/train.py <overrides>` in `cwd` as a user does; return what it did."""
    command = [sys.executable, str(REPO / "scripts" / "train.py"), *overrides]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
