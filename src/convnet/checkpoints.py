"""Checkpoint files: written atomically, read safely, checked against the model."""

from __future__ import annotations

import errno
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from convnet.checks import listed
from convnet.resume import folder_not_file


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the fix."""


class DiskFullError(OSError):
    """A checkpoint that did not fit on its disk; the message says the earlier one is intact."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves each checkpoint to a temporary file beside its target, then renames it.

    Lightning's own save stages the file in the system temp folder and moves it, which is
    a copy (not atomic) when that folder is on another file system. A rename within one
    folder is atomic: a kill at any moment leaves either the old file or the new one.

    read: a checkpoint already read (its path and contents), which Lightning's first load
    of that path is given instead of reading the file again (a resumed run reads its
    checkpoint once); later loads, such as the test's best checkpoint, read their files.
    """

    def __init__(self, read: tuple[Path, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self._read = read

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if self._read is not None and Path(path).resolve() == self._read[0].resolve():
            checkpoint, self._read = self._read[1], None
            return checkpoint
        if map_location is None:
            return super().load_checkpoint(path, weights_only=weights_only)
        return super().load_checkpoint(path, map_location, weights_only)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            with open(partial, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
        except Exception as error:
            if _disk_full(error):
                partial.unlink(missing_ok=True)  # so the free space reported is what is left
                raise DiskFullError(errno.ENOSPC, _disk_full_message(target)) from error
            raise
        finally:
            partial.unlink(missing_ok=True)


def _disk_full(error: BaseException) -> bool:
    """Return whether `error`, or an error it was raised while handling, is a full disk."""
    # torch.save reports a failed write as "RuntimeError: [enforce fail at
    # inline_container.cc:...] unexpected pos", raised while handling the OSError.
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _disk_full_message(target: Path) -> str:
    """Return what a full disk stopped, what it left intact, and how to go on."""
    free = shutil.disk_usage(target.parent).free
    if target.is_file():
        earlier = (
            f"The previous {target.name} ({target.stat().st_size / 1e6:.1f} MB) is intact: the "
            "new one is written beside it and only then put in its place. Free space on that "
            f"disk and resume from it (ckpt_path={target}), or"
        )
    else:
        earlier = "No earlier checkpoint of that name was there; free space on that disk, or"
    return (
        f"cannot write checkpoint {target}: the disk is full (no space left on device; "
        f"{free / 1e6:.1f} MB free in {target.parent}). {earlier} write the outputs to a disk "
        "with room: paths.log_dir=<folder>."
    )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Return a checkpoint's contents, read with weights_only=True (no pickled objects run)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} {folder_not_file(path)}")
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path}: no such file. Checkpoints are in outputs/train/runs/<run>/"
            "checkpoints/ (last.ckpt and the best epoch)."
        )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a PyTorch checkpoint (no complete zip "
            "archive). Use another checkpoint of the run, e.g. the best epoch's."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(error).__name__}: {error}). Use "
            "another checkpoint of the run."
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} holds no model weights (no state_dict)")
    return checkpoint


def check_compatible(state_dict: dict[str, torch.Tensor], module: nn.Module, path: Any) -> None:
    """Raise CheckpointError naming the keys and shapes where the checkpoint's weights
    differ from `module`'s (another architecture, width or number of classes)."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    shapes = [
        f"{key}: checkpoint {found[key]} vs model {expected[key]}"
        for key in sorted(expected.keys() & found.keys())
        if expected[key] != found[key]
    ]
    if not (missing or unexpected or shapes):
        return
    lines = []
    for title, items in [("missing", missing), ("unexpected", unexpected), ("shape", shapes)]:
        if items:
            lines.append(f"  {title}: {listed(items, 5)}")
    raise CheckpointError(
        f"checkpoint {path} was written by another model than this config builds:\n"
        + "\n".join(lines)
        + "\nUse the model and data settings of the run that wrote it (see its config.yaml), "
        "or a checkpoint of this model."
    )
