"""Run directories: a fresh one per run, the same one when resuming, never another run's.

A fresh folder is named by the second the run starts; the run claims it by making it
(os.mkdir fails for a name already taken), so runs started in the same second, in two
terminals or a job array, each get their own: the later ones add `_1`, `_2`...
"""

from __future__ import annotations

import copy
import datetime
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from convnet import keys
from convnet.checks import file_in_the_way, listed
from convnet.resume import (
    CHECKPOINTS,
    LAST_CHECKPOINT,
    NoRunToResumeError,
    continued_run,
    continues_runs,
    folder_order,
    last_checkpoint,
    newest_resumable_run,
    nothing_to_continue,
    resumed_run,
)
from convnet.run_records import hold_records, take_hydra_files

# What a run leaves in its folder (Hydra's configs, the resolved config, checkpoints,
# TensorBoard events, result.json); a folder holding any of them holds a run.
RUN_FILES = (".hydra", "config.yaml", CHECKPOINTS, "tensorboard", "result.json")
EVENTS = "events.out.tfevents.*"
STAMP = "%Y-%m-%d_%H-%M-%S"

# Hydra may resolve hydra.run.dir more than once in a process; every call must agree.
_chosen: dict[tuple[str, str], str] = {}
# The fresh folders the resolver named that the run has not claimed yet: folder -> (the
# resolver's key, the time stamp of the name).
_unclaimed: dict[str, tuple[tuple[str, str], str]] = {}


class RunFolderError(ValueError):
    """The folder a run would write to holds another run; raised before anything is written."""


def _named_by_time(runs_dir: Path, stamp: str) -> itertools.chain[Path]:
    """The folders a run started at `stamp` may take, in order: <stamp>, <stamp>_1, ..."""
    suffixed = (runs_dir / f"{stamp}_{suffix}" for suffix in itertools.count(1))
    return itertools.chain([runs_dir / stamp], suffixed)


def fresh_run_dir(
    runs_dir: Path, now: datetime.datetime | None = None, stamp: str | None = None
) -> Path:
    """Return a not-yet-existing folder under `runs_dir` named by the time `now` (or its
    `stamp`); not made: the run claims it with claim_fresh_run_dir when it starts."""
    stamp = stamp or (now or datetime.datetime.now()).strftime(STAMP)
    return next(path for path in _named_by_time(runs_dir, stamp) if not path.exists())


def claim_fresh_run_dir(runs_dir: Path, stamp: str) -> Path:
    """Make and return the first free folder of <stamp>, <stamp>_1, ... under `runs_dir`.

    Made with os.mkdir, which fails when the folder exists: of processes claiming the same
    name at the same moment, exactly one gets it and the others go on to the next suffix.
    """
    runs_dir.mkdir(parents=True, exist_ok=True)
    for candidate in _named_by_time(runs_dir, stamp):
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable: the suffixes never end")


def run_dir(runs_dir: str, ckpt_path: str | None) -> str:
    """Return the folder a train run writes to.

    A fresh folder, except when resuming: `ckpt_path=last` continues the newest run
    with a last.ckpt, and a checkpoint inside `runs_dir` continues its own run, so the
    run keeps one directory, one TensorBoard log and one set of checkpoints.
    """
    key = (runs_dir, str(ckpt_path))
    if key in _chosen:
        return _chosen[key]
    base = Path(runs_dir)
    # With nothing to resume, a fresh folder: the run itself then stops with a clear error
    # (an exception here would surface as a Hydra internal error).
    chosen = continued_run(ckpt_path, base)
    if chosen is None:
        stamp = datetime.datetime.now().strftime(STAMP)
        chosen = fresh_run_dir(base, stamp=stamp)
        _unclaimed[str(chosen)] = (key, stamp)
    _chosen[key] = str(chosen)
    return _chosen[key]


def claim_run_folder(folder: Path, existed: bool) -> Path:
    """Make the folder a single run writes to (`hydra.run.dir`, resolved to `folder`) its
    own, and return it: a fresh folder the run_dir resolver named is claimed under the next
    free name if another run took it meanwhile (the resolver then names the claimed one).

    existed: whether the folder existed when the run's folders were checked. A new folder
    given by hand that another run makes first is that run's: RunFolderError.
    """
    if str(folder) in _unclaimed:
        key, stamp = _unclaimed.pop(str(folder))
        claimed = claim_fresh_run_dir(folder.parent, stamp)
        _chosen[key] = str(claimed)
        return claimed
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()
    except FileExistsError:
        if existed:
            return folder
        raise RunFolderError(
            f"hydra.run.dir={folder} was made by another run starting at the same moment; "
            "two runs would mix their checkpoints and logs there. Nothing was written. Give "
            "each run its own folder (or leave hydra.run.dir unset for a fresh one under "
            "outputs/)."
        ) from None
    return folder


def register_resolvers() -> None:
    """Make `${run_dir:...}` available to configs (idempotent)."""
    if not OmegaConf.has_resolver("run_dir"):
        OmegaConf.register_new_resolver("run_dir", run_dir)


def run_contents(folder: Path) -> list[str]:
    """Return what of a run `folder` holds (e.g. `['.hydra/', 'checkpoints/']`), [] for none."""
    if not folder.is_dir():
        return []
    found = []
    for name in RUN_FILES:
        path = folder / name
        if path.exists():
            found.append(f"{name}/" if path.is_dir() else name)
    # TensorBoard events of a logger configured with another folder name.
    if "tensorboard/" not in found and (
        any(folder.glob(EVENTS)) or any(folder.glob(f"*/{EVENTS}"))
    ):
        found.append(EVENTS)
    return found


def check_run_folder(folder: Path, key: str, ckpt_path: str | None, resumed: Path | None) -> None:
    """Raise RunFolderError when `folder` (given by config `key`) holds a run this one would
    overwrite: any run, unless `resumed` (the run being continued) is that very folder."""
    contents = run_contents(folder)
    if not contents:
        return
    resumable = last_checkpoint(folder).is_file()
    if resumed is not None and resumed.absolute() == folder.absolute():
        if not nothing_to_continue(ckpt_path, folder):
            return
        raise RunFolderError(
            f"ckpt_path=last: {key}={folder} holds a run ({', '.join(contents)}) but no "
            f"{CHECKPOINTS}/{LAST_CHECKPOINT} to continue. Give one of its checkpoints "
            f"(ckpt_path={folder}/{CHECKPOINTS}/<file>.ckpt) or a new {key}."
        )
    elsewhere = f" (ckpt_path={ckpt_path} is not one of its checkpoints)" if ckpt_path else ""
    resume = f", or continue that run with ckpt_path=last and the same {key}" if resumable else ""
    raise RunFolderError(
        f"{key}={folder} already holds another run ({', '.join(contents)}){elsewhere}; "
        "writing there would overwrite its config and mix two runs' checkpoints and "
        f"TensorBoard logs. Nothing was written. Give a new folder ({key}=<new folder>, or "
        f"leave {key} unset for a fresh one under outputs/){resume}."
    )


def _as_in_the_run(config: DictConfig) -> tuple[DictConfig, Path]:
    """Return a copy of `config` whose ${hydra:...} resolve as in the run, and its
    hydra.run.dir (as the config gives it, resolved)."""
    config = copy.deepcopy(config)
    HydraConfig.instance().set_config(config)  # ${hydra:runtime.cwd} in the folders
    run_folder = Path(str(config.hydra.run.dir))
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.runtime.output_dir = str(run_folder.absolute())
    HydraConfig.instance().set_config(config)
    return config, run_folder


def check_run_folders(config: DictConfig) -> None:
    """Raise RunFolderError when a folder a single run would write to (`hydra.run.dir`, and
    `paths.output_dir` when set apart from it) holds another run.

    `config` is the composed config with Hydra's node, as Hydra holds it before the run's
    folder is made (hydra.runtime.output_dir not yet set).
    """
    config, run_folder = _as_in_the_run(config)
    run_folder = run_folder.absolute()
    output_dir = Path(str(OmegaConf.select(config, keys.OUTPUT_DIR, default=run_folder)))
    output_dir = output_dir.absolute()
    ckpt_path = OmegaConf.select(config, keys.CKPT_PATH, default=None)
    resumed = resumed_run(ckpt_path and str(ckpt_path), output_dir)
    check_run_folder(run_folder, "hydra.run.dir", ckpt_path, resumed)
    if output_dir != run_folder:
        check_run_folder(output_dir, keys.OUTPUT_DIR, ckpt_path, resumed)
    empty = not run_contents(output_dir)
    if keys.TRAIN in config and empty and nothing_to_continue(ckpt_path, output_dir):
        # Nothing to continue: say so before Hydra makes an empty run folder. Under the
        # runs folder, the run_dir resolver chose a fresh folder because none can resume.
        newest_resumable_run(run_folder.parent)
        raise NoRunToResumeError(
            f"ckpt_path=last: {output_dir} holds no run to continue (no {CHECKPOINTS}/"
            f"{LAST_CHECKPOINT}). Give the folder of the run to resume, or leave "
            "ckpt_path unset for a fresh run."
        )


def refuse_a_file_in_the_way(folder: Path, key: str) -> None:
    """Raise RunFolderError when `folder` (given by config `key`, or made from paths.log_dir)
    or one of the folders above it is a file: it could not be made."""
    blocking = file_in_the_way(folder)
    if blocking is not None:
        raise RunFolderError(
            f"{key}={folder} cannot be made: {blocking} is a file, not a folder. Nothing was "
            f"written. Give {key} (or paths.log_dir, where the outputs go) a folder."
        )


def begin_run(config: DictConfig) -> Path:
    """Check the folders of the single run `config` (see check_run_folders), claim its
    folder (see claim_run_folder) and return it; a training run's records are held back
    until it starts training (see convnet.run_records).

    Called before Hydra makes or writes anything; `config` is Hydra's own, which this
    changes as holding the records needs (hydra.output_subdir).
    """
    folder = _as_in_the_run(config)[1]
    refuse_a_file_in_the_way(folder.absolute(), "hydra.run.dir")
    existed = folder.is_dir()
    check_run_folders(config)
    claimed = claim_run_folder(folder, existed)
    if keys.TRAIN in config:
        # Only the training task (convnet.train.train) starts its records; others keep
        # Hydra's way. The log is held when the folder holds the run being continued.
        hold_records(config, log=bool(run_contents(claimed)))
    return claimed


def _continues_a_sweep(config: DictConfig) -> bool:
    """Return whether the sweep continues the one its folder holds: an Optuna study stored
    there numbers its new jobs after the earlier ones, ckpt_path=last continues each job."""
    storage = OmegaConf.select(config, keys.SWEEPER_STORAGE)
    return bool(storage) or continues_runs(config.get(keys.CKPT_PATH))


def claim_sweep_folder(config: DictConfig) -> Path | None:
    """Make a sweep's time-named folder (`hydra.sweep.dir` with `${now:...}`, the default)
    its own and return it, None for a folder given by name: sweeps started in the same
    second get <time>_1, _2... The claimed folder is written into `config` and into the
    overrides Hydra composes each job from, so every job lands in it."""
    raw = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("dir")
    if "${now:" not in str(raw):
        return None
    HydraConfig.instance().set_config(config)
    named = Path(str(config.hydra.sweep.dir))
    claimed = claim_fresh_run_dir(named.parent, named.name)
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweep.dir = str(claimed)
        config.hydra.overrides.hydra.append(f"hydra.sweep.dir='{claimed}'")
    return claimed


def begin_sweep(config: DictConfig) -> None:
    """Give a sweep a folder of its own before Hydra writes anything: a fresh time-named
    folder is claimed (see claim_sweep_folder), a folder given by name is checked (see
    check_sweep_folder); a sweep that continues its folder's sweep keeps it."""
    HydraConfig.instance().set_config(config)
    refuse_a_file_in_the_way(Path(str(config.hydra.sweep.dir)).absolute(), "hydra.sweep.dir")
    if _continues_a_sweep(config) or claim_sweep_folder(config) is None:
        check_sweep_folder(config)


def check_sweep_folder(config: DictConfig) -> None:
    """Raise RunFolderError when a sweep's folder holds an earlier sweep whose job folders
    this one would overwrite (unless it continues them: an Optuna study stored there numbers
    its new jobs after the earlier ones, and ckpt_path=last continues each job's run)."""
    if _continues_a_sweep(config):
        return
    HydraConfig.instance().set_config(config)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    if not sweep_dir.is_dir():
        return
    earlier = ["multirun.yaml"] if (sweep_dir / "multirun.yaml").exists() else []
    earlier += [
        f"{job.name}/" for job in sorted(sweep_dir.iterdir(), key=folder_order) if run_contents(job)
    ]
    if earlier:
        shown = listed(earlier, 5)
        raise RunFolderError(
            f"hydra.sweep.dir={sweep_dir} already holds another sweep ({shown}); its job "
            "folders would be overwritten. Nothing was written. Give a new hydra.sweep.dir "
            "(or leave it unset for a fresh one under outputs/), or continue each of its jobs "
            "with ckpt_path=last and the same hydra.sweep.dir."
        )


class RunFolderGuard(Callback):
    """Stops a run or sweep, before Hydra writes anything, whose folder holds another run;
    gives a single run a folder of its own and holds its records until it starts.

    Registered in configs/hydra/default.yaml under `hydra.callbacks`. Hydra makes the run's
    folder, opens its log and saves <run>/.hydra/ before the task function and before
    `on_job_start`, so the checks and the claim are made when the run or sweep starts.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Lightning starts the other DDP processes of a run as this script again, into the
        # folder rank zero has just made (LOCAL_RANK tells them apart): theirs to share.
        if os.environ.get("LOCAL_RANK", "0") != "0":
            return
        _exit_on_error(begin_run, config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        take_hydra_files(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _exit_on_error(begin_sweep, config)


def _exit_on_error(check: Callable[[DictConfig], object], config: DictConfig) -> None:
    try:
        check(config)
    except (RunFolderError, NoRunToResumeError) as error:
        # Hydra turns an exception raised in a callback into a warning and goes on; a
        # SystemExit stops the run, and prints its message without a traceback.
        raise SystemExit(f"{type(error).__name__}: {error}") from error
