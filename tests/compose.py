"""Run configs composed with Hydra's compose API, as the scripts would run them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from omegaconf import DictConfig

from convnet.compose import CONFIG_DIR
from convnet.compose import compose_config as compose_run_config
from tests.scripts import run_script

REPO = Path(__file__).resolve().parent.parent
CONFIGS = CONFIG_DIR  # the tests' name for it

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
    overrides = [f"paths.root_dir={tmp_path}", *overrides]
    return compose_run_config(config_name, overrides, output_dir or tmp_path / "run")


def train_script(cwd: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python scripts/train.py <overrides>` in `cwd` as a user does; return what it did."""
    return run_script([REPO / "scripts" / "train.py", *overrides], cwd=cwd, timeout=timeout)
