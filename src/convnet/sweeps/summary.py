"""The summary of a sweep: one row per setting, best first, from the jobs' result.json files.

A setting is one combination of the swept parameters other than the repeat keys (`seed`,
`data.fold`): jobs that differ only in those are repeats of one setting, and the row
gives the metric's mean and standard deviation over them.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from convnet import keys
from convnet.resume import folder_order
from convnet.sweeps.results import (
    OK,
    RESULT_FILE,
    RUNNING,
    UNREADABLE,
    JobResult,
    read_result,
)

log = logging.getLogger(__name__)

# Swept keys whose values are repeats of one setting rather than settings of their own.
REPEAT_KEYS = (keys.SEED, keys.FOLD)


@dataclass
class Job:
    """One job folder of a sweep: its name (the job number), overrides and result."""

    name: str
    path: Path
    overrides: dict[str, str]
    result: JobResult | None

    @property
    def status(self) -> str:
        return self.result.status if self.result is not None else RUNNING

    @property
    def value(self) -> float | None:
        if self.result is None or self.result.status != OK or self.result.value is None:
            return None
        return self.result.value


@dataclass
class Setting:
    """The jobs of one setting (its repeats) and what they scored."""

    params: dict[str, str]
    jobs: list[Job] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        return [job.value for job in self.jobs if job.value is not None]

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) >= 2 else None

    @property
    def epochs(self) -> float:
        return statistics.fmean(job.result.epochs if job.result else 0 for job in self.jobs)

    @property
    def seconds(self) -> float:
        return statistics.fmean(job.result.seconds if job.result else 0.0 for job in self.jobs)

    @property
    def status(self) -> str:
        """Return "ok" when every repeat succeeded, else the count of each status."""
        statuses = [job.status for job in self.jobs]
        if len(set(statuses)) == 1:
            return statuses[0]
        return ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))

    @property
    def error(self) -> str:
        errors = [job.result.error for job in self.jobs if job.result and job.result.error]
        return errors[0] if errors else ""


@dataclass
class SweepSummary:
    """Every setting of a sweep, sorted best first, and what was the same for all jobs."""

    sweep_dir: Path
    metric: str | None
    direction: str  # "maximize" or "minimize"
    params: list[str]  # swept keys that make a setting (columns of the table)
    repeat_keys: list[str]  # swept keys whose values are repeats
    fixed: dict[str, str]  # overrides every job shares
    settings: list[Setting]

    @property
    def jobs(self) -> list[Job]:
        return [job for setting in self.settings for job in setting.jobs]


# Overrides that say how a job ran, not what it is: a sweep continued with ckpt_path=last
# has jobs that finished before (without it) and jobs that resumed (with it), one setting.
NOT_SETTINGS = (keys.CKPT_PATH,)


def setting_of(overrides: Sequence[str]) -> dict[str, str]:
    """Return a job's setting: its overrides by key (`+`/`~` dropped), without those that say
    how it ran (NOT_SETTINGS)."""
    parsed = {}
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key not in NOT_SETTINGS:
            parsed[key] = value
    return parsed


def load_jobs(sweep_dir: Path) -> list[Job]:
    """Return the job folders of `sweep_dir` (those Hydra or a run wrote), by job number."""
    folders = [
        path
        for path in sweep_dir.iterdir()
        if path.is_dir() and ((path / RESULT_FILE).is_file() or (path / ".hydra").is_dir())
    ]
    jobs = []
    for path in sorted(folders, key=folder_order):
        try:
            result = read_result(path)
        except ValueError as error:
            log.warning("%s is not a result (%s): job %s is listed as unreadable",
                        path / RESULT_FILE, error, path.name)  # fmt: skip
            result = JobResult(UNREADABLE, error=f"{RESULT_FILE} unreadable: {error}")
        if result is not None and result.status != UNREADABLE:
            overrides = result.overrides
        elif (path / ".hydra" / "overrides.yaml").is_file():
            overrides = _stored_overrides(path / ".hydra" / "overrides.yaml")
        else:
            overrides = []
        jobs.append(Job(path.name, path, setting_of(overrides), result))
    return jobs


def _read_yaml(path: Path) -> Any:
    """Return a YAML file of a job folder as plain data: read with yaml.safe_load, so no
    `${...}` in it is resolved (resolvers would run) and no tag builds an object."""
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        log.warning("%s is not valid YAML (%s): ignored", path, error)
        return {}


def _stored_overrides(path: Path) -> list[str]:
    """Return the override strings Hydra stored in a job's .hydra/overrides.yaml, as written."""
    overrides = _read_yaml(path)
    return [str(item) for item in overrides] if isinstance(overrides, list) else []


def newest_sweep(sweeps_dir: Path) -> Path:
    """Return the most recently changed sweep folder under `sweeps_dir`."""
    folders = (
        [path for path in sweeps_dir.glob("*") if path.is_dir()] if sweeps_dir.is_dir() else []
    )
    if not folders:
        raise FileNotFoundError(
            f"no sweep under {sweeps_dir}; run one with `python scripts/train.py -m ...` or "
            "give the sweep's folder"
        )
    return max(folders, key=lambda path: path.stat().st_mtime)


def metric_direction(metric: str | None, sweep_dir: Path, jobs: list[Job]) -> str:
    """Return "maximize" or "minimize": the Optuna sweeper's direction when there is one,
    else guessed from the metric's name (losses and errors are minimized)."""
    for job in jobs:
        hydra_file = job.path / ".hydra" / "hydra.yaml"
        if hydra_file.is_file():
            sweeper = (_read_yaml(hydra_file).get("hydra") or {}).get("sweeper") or {}
            direction = sweeper.get("direction") if isinstance(sweeper, dict) else None
            first = direction[0] if isinstance(direction, list) and direction else direction
            if str(first).lower() in ("maximize", "minimize"):
                return str(first).lower()
            break
    name = (metric or "").lower()
    return "minimize" if "loss" in name or "err" in name else "maximize"


def _group(jobs: list[Job], params: list[str]) -> list[Setting]:
    settings: dict[tuple[str, ...], Setting] = {}
    for job in jobs:
        values = {key: job.overrides.get(key, "") for key in params}
        key = tuple(values.values())
        settings.setdefault(key, Setting(values)).jobs.append(job)
    return list(settings.values())


def summarize(sweep_dir: str | Path) -> SweepSummary:
    """Return the summary of the sweep in `sweep_dir`, settings sorted best first."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(
            f"{sweep_dir} is not a folder; give a sweep folder such as "
            "outputs/train/multiruns/<date>_<time>"
        )
    jobs = load_jobs(sweep_dir)
    if not jobs:
        raise FileNotFoundError(
            f"{sweep_dir} holds no job folders (with result.json or .hydra/); give the folder "
            "a `python scripts/train.py -m ...` sweep wrote, e.g. outputs/train/multiruns/<time>"
        )
    keys = list(dict.fromkeys(key for job in jobs for key in job.overrides))
    values = {key: {job.overrides.get(key) for job in jobs} for key in keys}
    swept = [key for key in keys if len(values[key]) > 1]
    fixed = {key: jobs[0].overrides[key] for key in keys if key not in swept}
    params = [key for key in swept if key not in REPEAT_KEYS]
    metric = next((job.result.metric for job in jobs if job.result and job.result.metric), None)
    direction = metric_direction(metric, sweep_dir, jobs)

    sign = -1.0 if direction == "maximize" else 1.0
    settings = sorted(
        _group(jobs, params),
        key=lambda s: (s.mean is None, sign * s.mean if s.mean is not None else 0.0),
    )
    repeat_keys = [key for key in swept if key in REPEAT_KEYS]
    return SweepSummary(sweep_dir, metric, direction, params, repeat_keys, fixed, settings)
