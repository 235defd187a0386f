"""A checkpoint write that fills the disk says so, and leaves the previous checkpoint intact."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
import torch

from convnet.checkpoints import AtomicCheckpointIO, DiskFullError, read_checkpoint

# What torch.save raises when the file it writes to cannot grow (seen on a full tmpfs).
TORCH_WRITE_FAILURE = "[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662"


def _no_space() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def torch_save_on_a_full_disk(obj: object, file) -> None:
    """Write part of a checkpoint, then fail as torch.save does when the disk fills up."""
    file.write(b"PK\x03\x04 part of a checkpoint")
    try:
        raise _no_space()  # the file object's write
    except OSError:
        raise RuntimeError(TORCH_WRITE_FAILURE)  # torch's writer, while handling it  # noqa: B904


def flush_on_a_full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let torch.save fill the file's buffer; fail when it is written out, as a full disk does."""

    def no_room(descriptor: int) -> None:
        raise _no_space()

    monkeypatch.setattr(os, "fsync", no_room)


def a_real_full_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torch.save write through /dev/full, where every write fails with ENOSPC."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    real_save = torch.save

    def save_to_dev_full(obj: object, file) -> None:
        file.write(b"PK\x03\x04")
        with open("/dev/full", "wb") as full:
            real_save(obj, full)

    monkeypatch.setattr(torch, "save", save_to_dev_full)


FULL_DISKS = {
    "torch-save-fails": lambda monkeypatch: monkeypatch.setattr(
        torch, "save", torch_save_on_a_full_disk
    ),
    "flush-fails": flush_on_a_full_disk,
    "dev-full": a_real_full_device,
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("full_disk", list(FULL_DISKS))
def test_a_full_disk_is_named_and_the_previous_checkpoint_stays_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full_disk: str
) -> None:
    io, target = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 4}, target)
    before = _sha256(target)

    FULL_DISKS[full_disk](monkeypatch)
    with pytest.raises(DiskFullError) as error:
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 5}, target)
    monkeypatch.undo()

    assert isinstance(error.value, OSError) and error.value.errno == errno.ENOSPC
    message = str(error.value)
    assert f"cannot write checkpoint {target}: the disk is full" in message
    assert "The previous last.ckpt" in message and "is intact" in message
    assert f"ckpt_path={target}" in message and "paths.log_dir=" in message
    assert _sha256(target) == before
    checkpoint = read_checkpoint(target)
    assert checkpoint["epoch"] == 4 and torch.equal(checkpoint["state_dict"]["w"], torch.ones(3))
    assert [path.name for path in target.parent.iterdir()] == ["last.ckpt"]  # no partial file


def test_a_full_disk_before_the_first_checkpoint_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "last.ckpt"
    monkeypatch.setattr(torch, "save", torch_save_on_a_full_disk)
    with pytest.raises(DiskFullError, match="No earlier checkpoint of that name was there"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, target)
    assert list(tmp_path.iterdir()) == []


def test_other_write_failures_keep_their_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(obj: object, file) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(torch, "save", read_only)
    with pytest.raises(PermissionError, match="Permission denied"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "last.ckpt")
