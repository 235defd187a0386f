"""Resuming an Optuna study: running the same command again continues it.

The study lives in SQLite inside the sweep folder (configs/hparams_search/optuna.yaml).
When that folder already holds trials, the study runs only the trials still missing
from `hydra.sweeper.n_trials`, its job folders carry on from the trial numbers already
used (so no earlier job folder is overwritten and folder N is trial N), and the sampler
is seeded afresh, so that it does not draw the same first points again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

# `${convnet.add:a,b}` is a + b; job folders of a resumed study are numbered
# `${convnet.add:${hydra.job.num},<trials so far>}`.
ADD_RESOLVER = "convnet.add"


def register_sweep_resolvers() -> None:
    """Make `${convnet.add:a,b}` available to configs (idempotent)."""
    if not OmegaConf.has_resolver(ADD_RESOLVER):
        OmegaConf.register_new_resolver(ADD_RESOLVER, lambda a, b: int(a) + int(b))


def resume_study(cfg: DictConfig) -> int:
    """Return the number of trials the study already holds, after adjusting the multirun
    config `cfg` to continue it (before Hydra builds the sweeper from `cfg`)."""
    sweeper = cfg.hydra.sweeper
    # SQLite creates its file but not the folder it goes in.
    Path(cfg.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
    if not sweeper.get("storage"):
        return 0
    import optuna

    try:
        study = optuna.load_study(study_name=sweeper.study_name, storage=sweeper.storage)
    except KeyError:  # no such study yet: a fresh start
        return 0
    trials = study.trials
    if not trials:
        return 0
    finished = sum(trial.state.is_finished() for trial in trials)
    remaining = max(int(sweeper.n_trials) - finished, 0)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        # Hydra builds the sweeper from this very config object after the callbacks.
        sweeper.n_trials = remaining
        if OmegaConf.select(sweeper, "sampler.seed") is not None:
            sweeper.sampler.seed = int(sweeper.sampler.seed) + len(trials)
        # Jobs are composed again from these overrides, so the offset reaches each job.
        offset = f"${{{ADD_RESOLVER}:${{hydra.job.num}},{len(trials)}}}"
        cfg.hydra.overrides.hydra.append(f"hydra.sweep.subdir='{offset}'")
    log.info(
        "resuming study %s: %d trials so far (%d finished); %d more to reach n_trials=%d, "
        "numbered from %d",
        sweeper.study_name,
        len(trials),
        finished,
        remaining,
        finished + remaining,
        len(trials),
    )
    return len(trials)
