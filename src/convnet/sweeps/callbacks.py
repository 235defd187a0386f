"""The Hydra callback of every sweep: check it before the first job, summarize after the last.

Registered in configs/hydra/default.yaml under `hydra.callbacks`.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from convnet.sweeps.check import SweepConfigError, check_sweep, is_optuna
from convnet.sweeps.optuna_study import register_sweep_resolvers, resume_study

log = logging.getLogger(__name__)

# Parallel launchers (joblib, submitit) unpickle this callback in each job's process
# before composing the job, which needs the resolver of resumed job folders.
register_sweep_resolvers()


class SweepCallback(Callback):
    """Checks a sweep's jobs before any starts, continues an interrupted Optuna study, and
    writes the summary (table, CSV, Markdown, PNG) into the sweep folder at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra sets this only per job; the sweep folder (paths.log_dir ->
        # ${hydra:runtime.cwd}) must resolve before that, in the sweeper and here.
        HydraConfig.instance().set_config(config)
        try:
            checked = check_sweep(config)
            log.info("checked the configs of %d jobs of this sweep", checked)
        except SweepConfigError as error:
            log.error("%s", error)
            # Hydra turns an exception raised in a callback into a warning and goes on;
            # a sweep that cannot run has to stop here, before its first job.
            raise SystemExit(1) from error
        except Exception as error:  # a sweep syntax the check does not know: Hydra decides
            log.warning("could not check the sweep's jobs before launching: %s", error)
        if is_optuna(config):
            resume_study(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Imported here, as the sweep ends: Hydra builds this callback for every command,
        # whose --cfg job or config mistake should answer without importing Lightning.
        from convnet.sweeps.report import write_report

        write_report(config.hydra.sweep.dir)
