"""Sweeps run as a person runs them: `scripts/train.py -m ...` in a subprocess, on tiny data."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.compose import REPO

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
        command = [sys.executable, str(REPO / "scripts" / "train.py"), "-m", *overrides]
        return subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    return run
