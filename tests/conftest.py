"""Shared fixtures: run configs on tiny data, writing under tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.compose import TINY_SHAPES, compose_config


@pytest.fixture
def train_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """Return a factory of train configs on tiny shapes, with extra overrides."""

    def make(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        return compose_config("train", [*TINY_SHAPES, *overrides], tmp_path, output_dir)

    return make
