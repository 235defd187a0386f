"""One process trains in a run folder at a time.

Two commands that train in the same folder (a run resumed with `ckpt_path=last` while it
is still training in another terminal, or the same sweep continued twice at once) would
write over each other's checkpoints, logs and result.json. A run holds an exclusive lock
on `<run>/.convnet.lock` while it trains; a second one stops before it reads or writes
anything there, and names the process that holds the folder.

The lock is the operating system's (`flock`): it goes with the process however that ends,
a kill included, so no stale lock is ever left to clear by hand. Only the process of global
rank zero takes it: the other DDP processes of a run share its folder. Where there is no
`flock` (Windows), runs are not held.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".convnet.lock"
# The environment variables that give a process's rank, set by Lightning's DDP launcher,
# torchrun and SLURM; a process where any of them is not 0 is not rank zero.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")

_held: set[Path] = set()  # the folders this process holds


class RunInUseError(OSError):
    """Another process is training in the run folder (an OSError, as the lock is the
    operating system's: shown to the user as one line)."""


def rank_zero() -> bool:
    """Return whether this process is the global rank zero of its run (or not distributed)."""
    return all(os.environ.get(name, "0") in ("", "0") for name in RANK_VARIABLES)


@contextlib.contextmanager
def hold_run_folder(folder: Path) -> Iterator[None]:
    """Hold `folder` for this process while the block runs, or raise RunInUseError at once
    when another process holds it. Holding a folder this process holds already is a no-op."""
    folder = folder.absolute()
    if fcntl is None or not rank_zero() or folder in _held:
        yield
        return
    handle = _lock(folder)
    _held.add(folder)
    try:
        yield
    finally:
        _held.discard(folder)
        # Unlinked while still locked: a process that opened the old file finds, once it
        # has the lock, that the path no longer names it, and tries again (see _lock).
        with contextlib.suppress(OSError):
            (folder / LOCK_FILE).unlink()
        handle.close()


def _lock(folder: Path) -> TextIO:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    while True:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held until released)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunInUseError(
                f"{folder} is being trained in by {holder}: two runs in one folder would "
                "write over each other's checkpoints and logs. Nothing was read or written. "
                "Wait for that run to end (or stop it) and run this again, or start a fresh "
                "run beside it (without ckpt_path)."
            ) from None
        try:
            same_file = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        handle.close()  # the holder removed it as we opened it: lock the new one
    handle.seek(0)
    handle.truncate()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    handle.write(f"process {os.getpid()} on {socket.gethostname()} since {started}\n")
    handle.flush()
    return handle
