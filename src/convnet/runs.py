"""Run directories: a fresh one per run, the same one when resuming."""

from __future__ import annotations

import datetime
from pathlib import Path

from omegaconf import OmegaConf

LAST = "last"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"

# Hydra may resolve hydra.run.dir more than once in a process; every call must agree.
_chosen: dict[tuple[str, str], str] = {}


class NoRunToResumeError(FileNotFoundError):
    """ckpt_path=last, but no run under the runs folder has a last.ckpt."""


def newest_resumable_run(runs_dir: Path) -> Path:
    """Return the newest run folder under `runs_dir` holding checkpoints/last.ckpt."""
    candidates = sorted(runs_dir.glob(f"*/{CHECKPOINTS}/{LAST_CHECKPOINT}"))
    if not candidates:
        raise NoRunToResumeError(
            f"ckpt_path=last: no run to resume under {runs_dir} (no */{CHECKPOINTS}/"
            f"{LAST_CHECKPOINT}). Start a fresh run without ckpt_path, or give the path of "
            "a checkpoint: ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt"
        )
    return candidates[-1].parent.parent


def fresh_run_dir(runs_dir: Path, now: datetime.datetime | None = None) -> Path:
    """Return a not-yet-existing folder under `runs_dir` named by the time."""
    stamp = (now or datetime.datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    candidate, suffix = runs_dir / stamp, 1
    while candidate.exists():
        candidate, suffix = runs_dir / f"{stamp}_{suffix}", suffix + 1
    return candidate


def run_dir(runs_dir: str, ckpt_path: str | None) -> str:
    """Return the folder a train run writes to.

    A fresh folder, except when resuming: `ckpt_path=last` continues the newest run
    with a last.ckpt, and a checkpoint inside `runs_dir` continues its own run, so the
    run keeps one directory, one TensorBoard log and one set of checkpoints.
    """
    key = (runs_dir, str(ckpt_path))
    if key not in _chosen:
        base = Path(runs_dir)
        if ckpt_path == LAST:
            # With nothing to resume, a fresh folder: the run itself then stops with a
            # clear error (an exception here would surface as a Hydra internal error).
            try:
                chosen = newest_resumable_run(base)
            except NoRunToResumeError:
                chosen = fresh_run_dir(base)
        elif ckpt_path and _is_inside(Path(ckpt_path).resolve(), base.resolve()):
            chosen = Path(ckpt_path).resolve().parent.parent
        else:
            chosen = fresh_run_dir(base)
        _chosen[key] = str(chosen)
    return _chosen[key]


def _is_inside(path: Path, folder: Path) -> bool:
    return path.parent.name == CHECKPOINTS and path.parent.parent.parent == folder


def register_resolvers() -> None:
    """Make `${run_dir:...}` available to configs (idempotent)."""
    if not OmegaConf.has_resolver("run_dir"):
        OmegaConf.register_new_resolver("run_dir", run_dir)
