"""Shared fixtures: run configs on tiny data, writing under tmp_path."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.compose import TINY_SHAPES, compose_config

if "PYTEST_XDIST_WORKER" in os.environ:
    # One torch thread a test worker, for it and the scripts it runs: with `-n 2` on 2
    # cores, two workers of 2 threads each spin against each other (one end-to-end test
    # took 116 s against 24 s alone).
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep what runs cache (image folders' statistics) out of the user's ~/.cache, in this
    process and in the scripts the tests run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVNET_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def train_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """Return a factory of train configs on tiny shapes, with extra overrides."""

    def make(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        return compose_config("train", [*TINY_SHAPES, *overrides], tmp_path, output_dir)

    return make
