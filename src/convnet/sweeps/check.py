"""Checks of a sweep before any job starts: compose its jobs' configs and build their parts.

A grid is checked job by job (the first MAX_CHECKED_JOBS of them); an Optuna study by a
few trials drawn at random from its search space, the custom part included. Each check
composes the job's config, applies the run checks of convnet.config and builds the data
module, the model and the optimizer, which is where a bad key or value shows up.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from convnet import keys
from convnet.compose import compose_in_running_hydra
from convnet.config import ConfigError, validate
from convnet.config_keys import missing_key_lines
from convnet.resume import continues_runs

# hydra.sweep.subdir as convnet's configs give it: a job's folder is its number.
JOB_NUMBER = "${hydra.job.num}"
# A grid's jobs beyond this many are only checked by Hydra as they are launched.
MAX_CHECKED_JOBS = 64
# Trials drawn from an Optuna search space to check.
OPTUNA_SAMPLES = 4
# Distinct problems quoted in the error.
MAX_PROBLEMS = 5


# The Optuna sweeper releases whose internal `create_params_from_overrides` the check calls
# (convnet[sweeps] installs one of them). It returns (distributions, fixed params) in these.
SWEEPER = "hydra-optuna-sweeper"
SWEEPER_RELEASES = ">=1.2,<1.4"


class SweepConfigError(ConfigError):
    """A sweep whose jobs cannot run; raised before any job starts."""


class SweeperChangedError(SweepConfigError):
    """The installed Optuna sweeper's internals are not those the check was written for."""


def is_optuna(cfg: DictConfig) -> bool:
    """Return whether the sweep runs with Hydra's Optuna sweeper."""
    return is_optuna_sweeper(OmegaConf.select(cfg, "hydra.sweeper._target_", default=""))


def is_optuna_sweeper(target: object) -> bool:
    """Return whether `target` (a hydra.sweeper._target_) is Hydra's Optuna sweeper."""
    return "optuna" in str(target).lower()


def sweep_arguments(cfg: DictConfig) -> list[str]:
    """Return the sweep's overrides: `hydra.sweeper.params`, then the command line's."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    return [f"{key}={value}" for key, value in params.items()] + list(cfg.hydra.overrides.task)


def grid_jobs(arguments: Sequence[str]) -> list[list[str]]:
    """Return the override list of every job of a grid, in launch order."""
    overrides = OverridesParser.create().parse_overrides(list(arguments))
    batches = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    return [list(job) for batch in batches for job in batch]


def optuna_jobs(cfg: DictConfig, arguments: Sequence[str], samples: int) -> list[list[str]]:
    """Return the overrides of `samples` trials drawn at random from the Optuna search space,
    built as the Optuna sweeper builds them (custom search space included)."""
    import optuna

    distributions, fixed = search_space(arguments)
    distributions = {k: v for k, v in distributions.items() if k not in fixed}
    custom = OmegaConf.select(cfg, "hydra.sweeper.custom_search_space")
    extend = instantiate({"_target_": custom, "_partial_": True}) if custom else None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        jobs = []
        for _ in range(samples):
            trial = study.ask(fixed_distributions=distributions)
            if extend is not None:
                extend(cfg, trial)
            params = {**trial.params, **fixed}
            jobs.append([f"{name}={value}" for name, value in params.items()])
    finally:
        optuna.logging.set_verbosity(verbosity)
    return jobs


def search_space(arguments: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the Optuna distributions and the fixed values of a sweep's overrides, built by
    the sweeper's own parser; raise SweeperChangedError when the installed sweeper's parser is
    not the one the check knows (a later release), instead of checking the sweep wrongly."""
    import optuna

    try:
        from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    except ImportError as error:
        raise _changed(
            f"its module no longer has create_params_from_overrides ({error})"
        ) from error
    built = create_params_from_overrides(list(arguments))
    if not (
        isinstance(built, tuple)
        and len(built) == 2
        and all(isinstance(part, dict) for part in built)
        and all(isinstance(d, optuna.distributions.BaseDistribution) for d in built[0].values())
    ):
        shape = f"a {len(built)}-tuple" if isinstance(built, tuple) else type(built).__name__
        raise _changed(
            f"create_params_from_overrides returned {shape}, not (distributions, fixed values)"
        )
    return built


def _changed(what: str) -> SweeperChangedError:
    try:
        installed = version(SWEEPER)
    except PackageNotFoundError:
        installed = "unknown"
    return SweeperChangedError(
        f"{SWEEPER}=={installed} is not a release convnet's sweep check knows: {what}. "
        f"Nothing was launched. Install the releases convnet is tested with: "
        f"pip install '{SWEEPER}{SWEEPER_RELEASES}' (what convnet[sweeps] installs)."
    )


def check_job(config_name: str, overrides: Sequence[str]) -> None:
    """Compose one job's config and build its data module, model and optimizer; raise
    whatever they raise."""
    # torch: only once a sweep is being checked
    from convnet.build import build_model, check_buildable
    from convnet.data.describe import complete_data_config

    cfg = compose_in_running_hydra(config_name, overrides)
    validate(cfg)
    check_buildable(cfg)
    complete_data_config(cfg)
    instantiate(cfg.data)
    model = build_model(cfg.model)
    instantiate(cfg.optimizer)([{"params": list(model.parameters())}])


def _described(error: Exception, config_name: str, overrides: Sequence[str]) -> str:
    """Return what a job's `error` says: its problems a line each (the sweep's own advice
    follows them); a key the config does not have named with the one meant, as the commands
    name it (the same line for every value swept over that key)."""
    # Hydra's error, or OmegaConf's it lets through (a key under a list, a group's number).
    if isinstance(error, ConfigCompositionException | ValueError | AssertionError):
        compose = functools.partial(compose_in_running_hydra, config_name)
        lines = missing_key_lines(compose, overrides)
        if lines:
            return "\n    ".join(lines)
    if isinstance(error, ConfigError) and error.problems:
        return "\n    ".join(error.problems)
    return str(error).strip()


def check_launcher(cfg: DictConfig) -> None:
    """Raise SweepConfigError when the SLURM launcher's counts are not numbers it can ask
    for (they come from trainer.devices, which may be -1 or auto for a local run)."""
    launcher = cfg.hydra.launcher
    if "tasks_per_node" not in launcher:
        return
    for key, least in (("tasks_per_node", 1), ("gpus_per_node", 0), ("nodes", 1)):
        value = OmegaConf.select(launcher, key)
        if value is not None and not (isinstance(value, int) and value >= least):
            raise SweepConfigError(
                f"hydra.launcher.{key}={value!r} is not allowed: SLURM needs an integer >= "
                f"{least}. It follows trainer.devices (and trainer.num_nodes): give the GPUs "
                "per node as a number, e.g. trainer.devices=4; nothing was launched."
            )


def check_continued_grid(cfg: DictConfig, jobs: Sequence[Sequence[str]]) -> None:
    """Raise SweepConfigError when a grid continued with ckpt_path=last would continue, in a
    job's folder, the run of another setting: Hydra numbers the jobs by their place in the
    grid, so a grid given otherwise (another value, another order) than the sweep it
    continues would resume, or keep, another setting's run as this job's."""
    from convnet.sweeps.results import read_result  # Lightning: only once a sweep starts
    from convnet.sweeps.summary import newest_sweep, setting_of

    given = OmegaConf.to_container(cfg.hydra.sweep, resolve=False)
    sweep_dir = Path(str(cfg.hydra.sweep.dir))
    named_by_time = "${now:" in str(given.get("dir"))
    if named_by_time or not sweep_dir.is_dir():
        # A time-named folder is a new one: every job would start from scratch in it.
        try:
            newest = f" (the newest: hydra.sweep.dir={newest_sweep(sweep_dir.parent)})"
        except FileNotFoundError:
            newest = ""
        where = (
            f"a new folder, {sweep_dir}" if named_by_time else f"{sweep_dir}, which is not there"
        )
        raise SweepConfigError(
            f"ckpt_path=last continues a sweep in its folder, and this one would run in {where}:"
            f" give the folder of the sweep to continue{newest}. Nothing was launched."
        )
    if given.get("subdir") != JOB_NUMBER:
        return  # job folders named otherwise: no folder to compare a job with
    for number, overrides in enumerate(jobs):
        try:
            result = read_result(sweep_dir / str(number))
        except ValueError:  # not JSON: the job's own resume says what is wrong with it
            continue
        if result is None:
            continue
        then, now = setting_of(result.overrides), setting_of(overrides)
        if then != now:
            # Where the two differ, a key given in one only shown as `key=` in the other.
            differ = [key for key in {**then, **now} if then.get(key) != now.get(key)]
            was = " ".join(f"{key}={then.get(key, '')}" for key in differ)
            would = " ".join(f"{key}={now.get(key, '')}" for key in differ)
            raise SweepConfigError(
                f"hydra.sweep.dir={sweep_dir} ckpt_path=last: its job folder {number} holds the "
                f"run of `{was}`, and job {number} of this sweep is `{would}` (where they "
                "differ): jobs are numbered by their place in the grid, so it would continue "
                "another setting's run. Nothing was launched. Continue with the overrides the "
                f"sweep was started with (hydra.overrides.task in {sweep_dir / 'multirun.yaml'}), "
                "or give a new hydra.sweep.dir."
            )


def check_sweep(cfg: DictConfig) -> int:
    """Return how many jobs were checked; raise SweepConfigError naming the problems when
    any checked job cannot run. Needs an initialized Hydra (as in a Hydra callback)."""
    check_launcher(cfg)
    arguments = sweep_arguments(cfg)
    if is_optuna(cfg):
        jobs = optuna_jobs(cfg, arguments, OPTUNA_SAMPLES)
    else:
        jobs = grid_jobs(arguments)
        if continues_runs(OmegaConf.select(cfg, keys.CKPT_PATH)):
            check_continued_grid(cfg, jobs)
        jobs = jobs[:MAX_CHECKED_JOBS]
    problems: dict[str, str] = {}  # error -> the first job with it
    failed = 0
    config_name = cfg.hydra.job.config_name
    for overrides in jobs:
        try:
            check_job(config_name, overrides)
        except Exception as error:
            failed += 1
            problems.setdefault(_described(error, config_name, overrides), " ".join(overrides))
    if problems:
        listed = list(problems.items())[:MAX_PROBLEMS]
        details = "\n".join(f"- job `{job}`:\n    {error}" for error, job in listed)
        raise SweepConfigError(
            f"the sweep cannot run; nothing was launched. {failed} of {len(jobs)} checked "
            f"jobs fail:\n{details}\nFix the swept keys and values on the "
            "command line or in hydra.sweeper.params (configs/hparams_search/)."
        )
    return len(jobs)
