"""The run's key hyperparameters in TensorBoard's HParams dashboard, beside its final metrics,
and as the params of every other logger (MLflow's params, the CSV logger's hparams.yaml)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from convnet.callbacks.base import tensorboard_writers

DEFAULT_METRICS = ("val/acc_best", "val/acc", "val/loss", "train/loss", "test/acc")


def flat_hparams(
    values: Mapping[str, Any], prefix: str = ""
) -> dict[str, bool | int | float | str]:
    """Return `values` flattened to "a.b" keys with values the dashboard can show."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flat_hparams(value, f"{name}.")
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = str(value)  # None, lists: shown as text
    return flat


class HParams(L.Callback):
    """Write the hyperparameters `hparams` and the names of `metrics` for the HParams dashboard.

    The dashboard shows each metric's last logged value from the run's own scalars, so
    the final metrics need no second copy; a sweep's runs are then one table to sort and
    filter. The hyperparameters come from the run config by interpolation, e.g.
    `lr: ${optimizer.lr}` and `model: ${hydra:runtime.choices.model}`. Loggers other than
    TensorBoard's get the hyperparameters through their log_hyperparams.
    """

    def __init__(
        self, hparams: Mapping[str, Any], metrics: Sequence[str] = DEFAULT_METRICS
    ) -> None:
        if not hparams:
            raise ValueError(
                "callbacks.hparams.hparams is empty: give at least one, e.g. lr: ${optimizer.lr}"
            )
        self.hparams = flat_hparams(hparams)
        self.metrics = list(metrics)
        self._session_open = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        experiment, start, _ = hparams_summaries(self.hparams, dict.fromkeys(self.metrics, 0.0))
        for writer in tensorboard_writers(trainer):
            file_writer = writer._get_file_writer()  # the public API has no raw summaries
            file_writer.add_summary(experiment)
            file_writer.add_summary(start)
        self._session_open = True
        for logger in trainer.loggers:
            if not isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(self.hparams)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self._session_open:
            return
        _, _, end = hparams_summaries(self.hparams, dict.fromkeys(self.metrics, 0.0))
        for writer in tensorboard_writers(trainer):
            writer._get_file_writer().add_summary(end)
        self._session_open = False
