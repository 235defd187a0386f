"""What a run continues: `ckpt_path` interpreted in one place, the checkpoint read once.

`ckpt_path` is unset (a fresh run), `last` (the newest run's checkpoints/last.ckpt, or
that of the run folder given) or a checkpoint file. Everything that depends on it asks
this module: the run-folder choice (`continued_run`, used by the `${run_dir:...}`
resolver), the folder guard (`resumed_run`, `check_resumable`), and the run itself, which
gets one `Resume` value, made by `Resume.from_config`: the file, the run folder, the
checkpoint's contents (read once, checked to have epochs left and an optimizer the run can
restore) and its global step (what the TensorBoard logger purges from).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from convnet import keys
from convnet.checks import ConfigError, listed

log = logging.getLogger(__name__)

LAST = "last"
CHECKPOINTS = "checkpoints"  # <run>/checkpoints/
LAST_CHECKPOINT = "last.ckpt"  # written every epoch
# What a resumed run takes from its checkpoint whatever the config says.
RESTORED = "optimizer"
# What it builds anew from the config, from the checkpoint's step on.
REBUILT = "scheduler"
# What it goes on training, and on what: the same as the checkpoint's, or refused.
MODEL, DATA = "model", "data"
# Keys of data.source that say where the data is and how it is read, not which data it is
# (a moved image folder): a resumed run may change them. Any other is another data set, or
# another split of it.
WHERE_DATA_LIVES = ("root", "download", "stats_cache", "on_bad_file")
MAX_SHOWN = 4  # differences a message lists
_UNSET = "unset"


class NoRunToResumeError(FileNotFoundError):
    """ckpt_path=last, but no run under the runs folder has a last.ckpt."""


def continues_runs(ckpt_path: str | None) -> bool:
    """Return whether `ckpt_path` continues whichever run its folder holds (`last`), as
    each job of a sweep given ckpt_path=last continues its own folder's run."""
    return ckpt_path == LAST


def folder_order(folder: Path) -> tuple[str | int, ...]:
    """Return a sort key putting folders in the order they were made, their names' numbers
    read as numbers: a sweep's jobs 0, 1, 2 ... 10, and runs by time stamp, then by the
    suffix the later runs of one second get (<stamp>, <stamp>_1, ... <stamp>_2, <stamp>_10).
    """
    # Text and numbers alternate, text first, so like compares with like.
    parts = re.split(r"(\d+)", folder.name)
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts))


def newest_resumable_run(runs_dir: Path) -> Path:
    """Return the newest run folder under `runs_dir` holding checkpoints/last.ckpt."""
    checkpoints = runs_dir.glob(f"*/{CHECKPOINTS}/{LAST_CHECKPOINT}")
    candidates = sorted(checkpoints, key=lambda path: folder_order(path.parent.parent))
    if not candidates:
        raise NoRunToResumeError(
            f"ckpt_path=last: no run to resume under {runs_dir} (no */{CHECKPOINTS}/"
            f"{LAST_CHECKPOINT}). Start a fresh run without ckpt_path, or give the path of "
            "a checkpoint: ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt"
        )
    return candidates[-1].parent.parent


def continued_run(ckpt_path: str | None, runs_dir: Path) -> Path | None:
    """Return the folder under `runs_dir` a run with `ckpt_path` continues, None for a fresh
    one: the newest resumable run for `last` (none: a fresh folder, where the run then stops
    with NoRunToResumeError), the run of a checkpoint in a run's checkpoints/ folder there."""
    if continues_runs(ckpt_path):
        try:
            return newest_resumable_run(runs_dir)
        except NoRunToResumeError:
            return None
    if ckpt_path:
        path = Path(ckpt_path).resolve()
        if path.parent.name == CHECKPOINTS and path.parent.parent.parent == runs_dir.resolve():
            return path.parent.parent
    return None


def resumed_run(ckpt_path: str | None, output_dir: Path) -> Path | None:
    """Return the run folder that `ckpt_path` continues: `output_dir` for `last`, the run of
    a checkpoint in a run's checkpoints/ folder, None for a fresh run."""
    if not ckpt_path:
        return None
    if continues_runs(ckpt_path):
        return output_dir
    path = Path(ckpt_path).absolute()
    return path.parent.parent if path.parent.name == CHECKPOINTS else None


def folder_not_file(folder: Path) -> str:
    """Return `is a folder, not a checkpoint file: give one of its checkpoints: ...` for a
    folder given where a checkpoint file goes (a run's folder, most often)."""
    found = sorted([*folder.glob("*.ckpt"), *folder.glob(f"{CHECKPOINTS}/*.ckpt")])
    if not found:
        return (
            f"is a folder, not a checkpoint file, and holds no .ckpt (nor does its {CHECKPOINTS}/)"
        )
    return f"is a folder, not a checkpoint file: give one of its checkpoints: {listed(found)}"


def last_checkpoint(run_dir: Path) -> Path:
    """Return where the last.ckpt of the run in `run_dir` lives."""
    return run_dir / CHECKPOINTS / LAST_CHECKPOINT


def nothing_to_continue(ckpt_path: str | None, folder: Path) -> bool:
    """Return whether `ckpt_path` asks to continue the run in `folder` and it holds no
    last.ckpt to continue from."""
    return continues_runs(ckpt_path) and not last_checkpoint(folder).is_file()


def checkpoint_file(ckpt_path: str | None, run_dir: Path) -> Path | None:
    """Return the checkpoint file a run in `run_dir` resumes from, None for a fresh run;
    raise naming the fix when there is no such file."""
    if not ckpt_path:
        return None
    if continues_runs(ckpt_path):
        path = last_checkpoint(run_dir)
        if not path.is_file():
            newest_resumable_run(run_dir.parent)  # names the runs folder and the fix
        return path
    if Path(ckpt_path).is_dir():
        raise ConfigError(f"ckpt_path={ckpt_path} {folder_not_file(Path(ckpt_path))}")
    if not Path(ckpt_path).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path}: no such checkpoint file. Give the path of a .ckpt file, "
            "`last` to resume the newest run, or leave ckpt_path unset."
        )
    return Path(ckpt_path)


# What a job of a sweep continued with ckpt_path=last does (see continued_job).
FINISHED = "finished"  # its last.ckpt has trained every epoch: not run again
RESUMES = "resumes"  # it continues from its last.ckpt
FRESH = "fresh"  # it has no last.ckpt: it starts from scratch


def continued_job(cfg: DictConfig) -> tuple[str, dict[str, Any] | None]:
    """Return what the job `cfg` of a sweep continued with ckpt_path=last does, with its
    last.ckpt's contents when read (for Resume.from_config: read once): FINISHED when that
    checkpoint has trained all of trainer.max_epochs (a job that finished before the sweep
    stopped: it is not run again and its folder is left as it is), FRESH when the folder
    holds no last.ckpt (a job that had not started, or had not finished an epoch:
    `cfg.ckpt_path` is then set to null, so it starts from scratch), else RESUMES."""
    from convnet.checkpoints import CheckpointError, read_checkpoint

    path = last_checkpoint(Path(cfg.paths.output_dir))
    if not path.is_file():
        log.info(
            "ckpt_path=last: %s holds no %s/%s (the job had not started, or had not finished "
            "an epoch): it starts from scratch",
            path.parent.parent,
            CHECKPOINTS,
            LAST_CHECKPOINT,
        )
        cfg[keys.CKPT_PATH] = None
        return FRESH, None
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError:
        return RESUMES, None  # the resume itself reads it and says what is wrong with it
    done = epochs_trained(checkpoint) >= int(cfg.trainer.max_epochs)
    return (FINISHED if done else RESUMES), checkpoint


@dataclass(frozen=True)
class Resume:
    """What one run continues, made once from its config (see `from_config`)."""

    path: Path | None  # the checkpoint file; None for a fresh run
    run_dir: Path  # the folder the run writes to
    checkpoint: dict[str, Any] | None  # its contents when training, read once; else None
    global_step: int | None  # the checkpoint's optimizer steps, when training from it

    @property
    def stored_config(self) -> dict[str, Any] | None:
        """Return the run config stored in the checkpoint (resolved), or None."""
        from convnet.module import CONFIG_KEY

        stored = self.checkpoint.get(CONFIG_KEY) if self.checkpoint is not None else None
        return stored if isinstance(stored, dict) else None

    @classmethod
    def from_config(cls, cfg: DictConfig, read: dict[str, Any] | None = None) -> Resume:
        """Return what the run `cfg` continues; a training run's checkpoint is read (once,
        memory-mapped; `read`: its contents, read already) and checked to have epochs left
        and an optimizer the run can restore."""
        from convnet.checkpoints import read_checkpoint  # torch: only once a run is built

        run_dir = Path(cfg.paths.output_dir)
        path = checkpoint_file(cfg.get(keys.CKPT_PATH), run_dir)
        if path is None or not cfg.get(keys.TRAIN, True):
            return cls(path, run_dir, None, None)
        checkpoint = read if read is not None else read_checkpoint(path)
        check_unfinished(path, checkpoint, cfg)
        check_resume_settings(path, checkpoint, cfg)
        step = checkpoint.get("global_step")
        return cls(path, run_dir, checkpoint, None if step is None else int(step))


def epochs_trained(checkpoint: dict[str, Any]) -> int:
    """Return the epochs a Lightning checkpoint has trained (whose batches all ran)."""
    loops = checkpoint.get("loops") or {}
    progress = loops.get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    # `processed` counts the epochs whose batches all ran; `completed` lags one behind
    # in the checkpoint written at the end of an epoch.
    return int(progress.get("processed", 0))


def check_unfinished(path: Path, checkpoint: dict[str, Any], cfg: DictConfig) -> None:
    """Raise ConfigError if the checkpoint (read from `path`) has already trained all its
    epochs: the fit would do nothing and the run folder would be written for no reason."""
    done, max_epochs = epochs_trained(checkpoint), int(cfg.trainer.max_epochs)
    if done >= max_epochs:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: {path} has trained all of its {done} epochs "
            f"(trainer.max_epochs={max_epochs}). To train longer, raise trainer.max_epochs; "
            f"to score it, run scripts/eval.py ckpt_path={path}"
        )


def _differences(now: Any, then: Any, key: str) -> list[tuple[str, Any, Any]]:
    """Return (key, value now, value in the checkpoint's run) for each differing leaf."""
    if isinstance(now, dict) and isinstance(then, dict):
        keys = sorted(now.keys() | then.keys())
        return [
            difference
            for name in keys
            for difference in _differences(
                now.get(name, _UNSET), then.get(name, _UNSET), f"{key}.{name}"
            )
        ]
    return [] if now == then else [(key, now, then)]


def check_resume_settings(path: Path, checkpoint: dict[str, Any], cfg: DictConfig) -> None:
    """Say which optimizer and scheduler values of `cfg` differ from those of the run that
    wrote the checkpoint: a resumed run restores the checkpoint's optimizer state (its
    learning rate, momentum, weight decay...), so optimizer values are ignored, with a
    warning, and another optimizer is a ConfigError (its state would not load); scheduler
    values shape the schedule from the checkpoint's step on, which the warning says."""
    from convnet.module import CONFIG_KEY

    stored = checkpoint.get(CONFIG_KEY)
    if not isinstance(stored, dict):
        return  # a checkpoint without its run's config: nothing to compare
    check_same_network_and_data(path, stored, cfg)
    now = {key: _plain(cfg.get(key)) for key in (RESTORED, REBUILT)}
    ignored = _differences(now[RESTORED], stored.get(RESTORED), RESTORED)
    reshaping = _differences(now[REBUILT], stored.get(REBUILT), REBUILT)
    target = f"{RESTORED}._target_"
    for key, value, was in ignored:
        if key == target:
            raise ConfigError(
                f"{key}={value}: {path} was trained with {was}, whose state a resumed "
                "run restores and this optimizer cannot take. Resume with the checkpoint's "
                f"optimizer (see its run's config.yaml), or start a fresh run from its weights: "
                f"model.pretrained={path} without ckpt_path."
            )
    said = []
    if ignored:
        verb = "is" if len(ignored) == 1 else "are"
        said.append(
            f"{_listed(ignored)} {verb} ignored: a resumed run restores the checkpoint's "
            "optimizer state, with its values"
        )
    if reshaping:
        step = checkpoint.get("global_step", "?")
        said.append(
            f"from step {step} on, the schedule follows {_listed(reshaping)}, its peak still "
            "the checkpoint's learning rate"
        )
    if said:
        log.warning(
            "resuming %s: %s. To train with them from the start of a schedule, start a "
            "fresh run from its weights: model.pretrained=%s and no ckpt_path.",
            path,
            "; ".join(said),
            path,
        )


def _compared(now: Any, then: Any, key: str) -> list[tuple[str, Any, Any]]:
    """Return the differences of `now` from `then` at keys both have, where `now` is set: a
    key one of them lacks is one convnet added or dropped since, and a null the run fills in
    from the checkpoint (an image folder's class count, size, mean, std)."""
    return [
        (name, value, was)
        for name, value, was in _differences(now, then, key)
        if _UNSET not in (value, was) and value is not None
    ]


def check_same_network_and_data(path: Path, stored: dict[str, Any], cfg: DictConfig) -> None:
    """Raise ConfigError when `cfg` builds another network than the run that wrote the
    checkpoint (`path`, its stored config `stored`) trained, or trains it on another data
    source: weights of the same shapes would load, and the run would go on as another one
    (a gelu network from a relu one's weights, CIFAR-10 from where shapes left off). Say
    which other data values it trains with (a batch size, an image folder moved)."""
    model = [
        difference
        for difference in _compared(_plain(cfg.get(MODEL)), stored.get(MODEL), MODEL)
        if difference[0] != keys.PRETRAINED  # the checkpoint's weights win
    ]
    data = _compared(_plain(cfg.get(DATA)), stored.get(DATA), DATA)
    source = [
        difference
        for difference in data
        if difference[0].startswith(f"{keys.DATA_SOURCE}.")
        and difference[0].rpartition(".")[2] not in WHERE_DATA_LIVES
    ]
    data = [difference for difference in data if difference not in source]
    other = [difference for difference in model if difference[0] == f"{MODEL}._target_"]
    if model or source:
        # Another kind of network differs in most of its keys: its kind says it.
        shown = _listed(other or (model + source)[:MAX_SHOWN])
        more = len(model + source) - MAX_SHOWN if not other else 0
        shown += f" (and {more} more)" if more > 0 else ""
        raise ConfigError(
            f"{shown}: {path} was trained with the checkpoint's, and a "
            "resumed run goes on training that network on that data. Resume with the "
            "settings of the run that wrote it (its config.yaml), or start a fresh run from "
            f"its weights: model.pretrained={path} without ckpt_path."
        )
    if data:
        log.warning(
            "resuming %s with other data values: %s; the rest of the run trains with them",
            path,
            _listed(data),
        )


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _listed(differences: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{key}={value} (the checkpoint's: {was})" for key, value, was in differences)
