"""One process trains in a run folder at a time (convnet.run_lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from convnet import run_lock
from convnet.errors import user_error_line
from convnet.run_lock import LOCK_FILE, RunInUseError, hold_run_folder

# Holds the folder in argv[1] until its stdin closes; says so on stdout first.
HOLDER = """
import sys
from pathlib import Path
from convnet.run_lock import hold_run_folder
with hold_run_folder(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def _rank_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in run_lock.RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def hold_in_another_process(folder: Path) -> subprocess.Popen:
    """Return a process holding `folder` (its stdin open: close it to let go)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_a_folder_held_by_another_process_is_refused_naming_it(tmp_path: Path) -> None:
    holder = hold_in_another_process(tmp_path)
    try:
        with pytest.raises(RunInUseError) as refused, hold_run_folder(tmp_path):
            pytest.fail("entered a folder another process holds")
        message = str(refused.value)
        assert f"process {holder.pid} on " in message and str(tmp_path) in message
        assert "Nothing was read or written" in message
        # Shown as one line, as a user's mistake, not as a bug's traceback.
        assert user_error_line(refused.value).startswith("RunInUseError: ")
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    # Let go: the folder is free again, and no lock file is left behind.
    assert not (tmp_path / LOCK_FILE).exists()
    with hold_run_folder(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().startswith(f"process {os.getpid()} on ")
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_killed_holder_leaves_no_lock_to_clear_by_hand(tmp_path: Path) -> None:
    holder = hold_in_another_process(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / LOCK_FILE).exists()  # its file stays, but not its lock
    with hold_run_folder(tmp_path):
        pass


def test_holding_a_folder_twice_in_one_process_is_one_hold(tmp_path: Path) -> None:
    with hold_run_folder(tmp_path), hold_run_folder(tmp_path):
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()


def test_the_other_ranks_of_a_ddp_run_share_rank_zeros_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = hold_in_another_process(tmp_path)  # rank zero
    try:
        for name, value in [("LOCAL_RANK", "1"), ("RANK", "3"), ("SLURM_PROCID", "2")]:
            monkeypatch.setenv(name, value)
            with hold_run_folder(tmp_path):
                pass
            monkeypatch.delenv(name)
        with pytest.raises(RunInUseError), hold_run_folder(tmp_path):
            pass
    finally:
        holder.communicate("")
