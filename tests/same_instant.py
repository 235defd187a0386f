"""Run `scripts/train.py <overrides>` as a user does, but let it name its run folder only at
a barrier, with the clock stopped at one second: runs a test starts together then name
their folders at the same instant, alike.

    python tests/same_instant.py <ready file> <go file> <overrides...>

When the process is about to name its fresh run folder, it writes <ready file> and waits
until <go file> exists, looking every 0.1 ms: the test makes it once every process is ready,
which lets them all go within that.
"""

from __future__ import annotations

import datetime
import runpy
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import convnet.runs

TRAIN = Path(__file__).resolve().parent.parent / "scripts" / "train.py"
INSTANT = datetime.datetime(2026, 1, 2, 3, 4, 5)


class _Stopped(datetime.datetime):
    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:
        return INSTANT


def main() -> None:
    barrier = [Path(sys.argv[1]), Path(sys.argv[2])]  # (ready, go) until passed
    name_fresh_run_dir = convnet.runs.fresh_run_dir

    def at_the_barrier(*args: Any, **kwargs: Any) -> Path:
        if barrier:
            ready, go = barrier
            ready.touch()
            while not go.exists():
                time.sleep(1e-4)
            barrier.clear()
        return name_fresh_run_dir(*args, **kwargs)

    sys.argv = [str(TRAIN), *sys.argv[3:]]
    with (
        mock.patch.object(convnet.runs, "datetime", SimpleNamespace(datetime=_Stopped)),
        mock.patch.object(convnet.runs, "fresh_run_dir", at_the_barrier),
    ):
        runpy.run_path(str(TRAIN), run_name="__main__")


if __name__ == "__main__":
    main()
