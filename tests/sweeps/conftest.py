"""Sweeps run as a person runs them: `scripts/train.py -m ...` in a subprocess, on tiny data."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.compose import REPO
from tests.scripts import run_script

# One epoch of a few batches of digits with the small default model: a job takes ~1 s.
TINY_DIGITS = [
    "data=digits",
    "debug=fast",
    "trainer.limit_val_batches=1",
    "test=false",
    "callbacks=none",
    "logger=none",
]


@pytest.fixture
def run_sweep(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Return a runner of `scripts/train.py -m <overrides>` writing under tmp_path."""

    def run(*overrides: str) -> subprocess.CompletedProcess:
        # One thread per process: the jobs are tiny and the test machine is shared.
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
        return run_script([REPO / "scripts" / "train.py", "-m", *overrides], cwd=tmp_path, env=env)

    return run
