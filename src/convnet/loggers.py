"""The TensorBoard logger of a run: a sweep job's run is named by the job's overrides.

TensorBoard names a run by the folder of its events, relative to `--logdir`. A sweep's jobs
live in numbered folders (`multiruns/<time>/0/`), so their runs would read `0/tensorboard`,
`1/tensorboard`: in the run list and the HParams table nothing says which job is which.
A sweep job's events go one folder deeper, into `tensorboard/<its overrides>` (Hydra's
`hydra.job.override_dirname`, e.g. `model=resnet20,optimizer.lr=0.1`), so the run reads
`0/tensorboard/model=resnet20,optimizer.lr=0.1`. A single run keeps `tensorboard/`
itself, which a resumed run appends to whatever overrides it is resumed with.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger

MAX_NAME = 200  # characters of a folder name: file systems allow 255 bytes


def sweep_run_name(overrides: str) -> str:
    """Return a folder name for a sweep job's overrides: path separators become `_`, and
    a name past MAX_NAME characters is cut, with a hash of the whole that keeps it unique."""
    name = overrides.replace("/", "_").replace("\\", "_")
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}_{digest}"


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoardLogger, whose version folder in a sweep job is its overrides.

    sweep: whether this is a sweep job; None asks Hydra (its run mode is MULTIRUN). In a
        sweep job `version` is replaced by `sweep_run_name(overrides)`, unless the job has
        no overrides.
    overrides: the job's overrides as Hydra joins them (`${hydra:job.override_dirname}`).
    Other arguments as Lightning's.
    """

    def __init__(
        self,
        save_dir: str | Path,
        name: str = "tensorboard",
        version: str | int | None = "",
        overrides: str = "",
        sweep: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if sweep is None:
            # Read here, not passed in the config: the run config is stored in checkpoints,
            # which hold plain data only (Hydra's RunMode is an enum).
            sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if sweep and overrides:
            version = sweep_run_name(overrides)
        super().__init__(save_dir, name=name, version=version, **kwargs)
