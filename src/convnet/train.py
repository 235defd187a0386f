"""Training: the orchestration of a run. Fit, test, return the metrics.

What a run is made of comes from convnet.build (network, module, trainer), what it
continues from convnet.resume (one Resume value), and when its records are written from
convnet.run_records: this module puts them in order and nothing more.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from convnet import keys
from convnet.build import (
    build_module,
    build_network,
    build_trainer,
    check_buildable,
    prepare_host_memory,
    resolved_config,
)
from convnet.checkpoints import check_compatible
from convnet.config import validate
from convnet.data import ImageDataModule
from convnet.data.describe import complete_data_config
from convnet.resume import Resume
from convnet.run_lock import hold_run_folder
from convnet.run_records import start_records

log = logging.getLogger(__name__)


@rank_zero_only
def save_resolved_config(cfg: DictConfig) -> Path:
    """Write the resolved run config to <run>/config.yaml (.hydra/ keeps the unresolved one)."""
    path = Path(cfg.paths.output_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(resolved_config(cfg))))
    return path


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (torch.Tensor, float, int))}


def train(
    cfg: DictConfig,
    callbacks: Sequence[Callback] = (),
    resume: Resume | None = None,
) -> dict[str, float]:
    """Train (and test) the run `cfg` describes; return the final metrics by name.

    The run's records (config.yaml; under Hydra its .hydra/ files, and result.json through
    the recorder) are first written once the config, the checkpoint it resumes, the data
    and the network have passed their checks (see convnet.run_records).

    `callbacks` are added to those of `cfg.callbacks` (scripts/train.py passes the recorder
    of <run>/result.json that sweep summaries read). `resume`: Resume.from_config(cfg), when
    the caller has made it already (the checkpoint is then read once).
    """
    validate(cfg)
    check_buildable(cfg)
    # Before the checkpoint is read: another process training in the folder stops this one.
    with hold_run_folder(Path(cfg.paths.output_dir)):
        return _train(cfg, callbacks, resume)


def _train(
    cfg: DictConfig, callbacks: Sequence[Callback], resume: Resume | None
) -> dict[str, float]:
    resume = resume if resume is not None else Resume.from_config(cfg)
    # Null data keys (an image folder's class count, channels, size, mean, std) are taken
    # from the data, or from the config of the run this one resumes.
    stored = resume.stored_config
    complete_data_config(cfg, stored.get("data") if stored else None)
    prepare_host_memory(cfg)
    L.seed_everything(cfg.seed, workers=True)
    # Before the data is loaded (an image folder's scan can take minutes): a trainer setting
    # Lightning refuses (a precision, a strategy, devices the machine lacks) fails first.
    trainer = build_trainer(cfg, callbacks, resume)
    datamodule: ImageDataModule = instantiate(cfg.data)
    if cfg.get(keys.TRAIN, True):
        # The data is loaded now, so a data set that is missing or does not fit the config
        # fails before the run writes anything (Lightning's fit finds it loaded).
        datamodule.prepare_data()
        datamodule.setup("fit")
    module = build_module(cfg, build_network(cfg))
    if resume.checkpoint is not None:
        check_compatible(resume.checkpoint["state_dict"], module, resume.path)
    # Every check has passed: the run's records are written from here on. A command that
    # failed before left its folder, and the run it meant to continue, as they were.
    start_records()
    save_resolved_config(cfg)

    if cfg.get(keys.TRAIN, True):
        if resume.path is not None:
            log.info("resuming from %s", resume.path)
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume.path, weights_only=True)
        except SIGTERMException as stopped:
            # Lightning exits with status 0 on SIGTERM; a run that did not finish must not
            # look finished to schedulers and sweeps. 143 = 128 + SIGTERM, the usual status.
            raise SystemExit(128 + signal.SIGTERM) from stopped
    metrics = _floats(trainer.callback_metrics)

    if cfg.get("test", False):
        datamodule.setup("test")
        if datamodule.has_test_split():
            checkpoint = trainer.checkpoint_callback
            best = checkpoint.best_model_path if checkpoint is not None else ""
            if not best:
                log.warning("no best checkpoint: testing the current weights")
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
            metrics |= _floats(trainer.callback_metrics)
        else:
            log.info("this data source has no test split: skipping the test")
    return metrics
