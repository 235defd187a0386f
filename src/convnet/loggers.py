"""The loggers of a run: TensorBoard, a CSV table, MLflow; a sweep job's run is named by
the job's overrides in every one, and a resumed run goes on in the same log.

TensorBoard names a run by the folder of its events, relative to `--logdir`. A sweep's jobs
live in numbered folders (`multiruns/<time>/0/`), so their runs would read `0/tensorboard`,
`1/tensorboard`: in the run list and the HParams table nothing says which job is which.
A sweep job's events go one folder deeper, into `tensorboard/<its overrides>` (Hydra's
`hydra.job.override_dirname`, e.g. `model=resnet20,optimizer.lr=0.1`), so the run reads
`0/tensorboard/model=resnet20,optimizer.lr=0.1`. A single run keeps `tensorboard/`
itself, which a resumed run appends to whatever overrides it is resumed with.

MLflow keeps every run in one store (`outputs/mlruns`), in an experiment named by the
folder that holds the run (`train/runs`, `train/multiruns/<time>`: one per sweep); a run is
named by its folder, a sweep job by its overrides, as in TensorBoard. The run's id is kept in
`<run>/mlflow_run_id`, so a resumed run logs on into the same MLflow run.

The CSV table, `<run>/csv/metrics.csv`, takes a resumed run's rows after the earlier ones;
the rows of a killed run's steps past its checkpoint, which the resumed run logs again,
move to `metrics_purged.csv` beside it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from argparse import Namespace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from convnet.checks import ConfigError
from convnet.csv_log import PURGED_FILE, CSVLogger  # noqa: F401  (configs name convnet.loggers.CSVLogger)

log = logging.getLogger(__name__)

MAX_NAME = 200  # characters of a folder name: file systems allow 255 bytes
RUN_ID_FILE = "mlflow_run_id"  # <run>/mlflow_run_id: the run's MLflow run id, plain text
RUN_ID = re.compile(r"[0-9a-f]{32}")  # what MLflow's stores make (uuid4 hex)
MLFLOW_INSTALL = "pip install 'convnet[mlflow]' (in a checkout: pip install -e '.[mlflow]')"


def sweep_run_name(overrides: str) -> str:
    """Return a folder name for a sweep job's overrides: path separators become `_`, and
    a name past MAX_NAME characters is cut, with a hash of the whole that keeps it unique."""
    name = overrides.replace("/", "_").replace("\\", "_")
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}_{digest}"


def is_sweep_job(sweep: bool | None) -> bool:
    """Return `sweep`, or when None whether Hydra runs this job in a sweep (MULTIRUN)."""
    if sweep is not None:
        return sweep
    # Read here, not passed in the config: the run config is stored in checkpoints, which
    # hold plain data only (Hydra's RunMode is an enum).
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


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
        if is_sweep_job(sweep) and overrides:
            version = sweep_run_name(overrides)
        super().__init__(save_dir, name=name, version=version, **kwargs)


def require_mlflow() -> None:
    """Raise ConfigError naming convnet's extra when the mlflow package cannot be imported."""
    try:
        import mlflow  # noqa: F401
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"logger=mlflow needs the package {error.name}, which is not installed: "
            f"{MLFLOW_INSTALL}"
        ) from error


def is_file_store(tracking_uri: str) -> bool:
    """Return whether `tracking_uri` names a folder of MLflow's file store."""
    return urlparse(tracking_uri).scheme in ("", "file")


def experiment_of(run_dir: Path, runs_root: Path | None) -> str:
    """Return the MLflow experiment of the run in `run_dir`: the folder holding it, relative
    to `runs_root` (`train/runs`, `train/multiruns/<time>`), else that folder's name."""
    holder = run_dir.absolute().parent
    if runs_root is not None and holder.is_relative_to(Path(runs_root).absolute()):
        return holder.relative_to(Path(runs_root).absolute()).as_posix()
    return holder.name


def kept_run_id(run_dir: Path) -> str | None:
    """Return the MLflow run id kept in `<run_dir>/mlflow_run_id`, None when there is none
    or the file holds something else (it is only read as text, never run)."""
    path = run_dir / RUN_ID_FILE
    if not path.is_file():
        return None
    text = path.read_text(errors="replace").strip()
    if RUN_ID.fullmatch(text):
        return text
    log.warning("%s does not hold an MLflow run id: this run logs into a new MLflow run", path)
    return None


class MLFlowLogger(LightningMLFlowLogger):
    """Lightning's MLFlowLogger, with the run's experiment and name chosen from its folder
    and overrides, going on in the same MLflow run when the run is resumed.

    run_dir: the run's folder. Its MLflow run id is written to `<run_dir>/mlflow_run_id`; a
        logger made for a folder that has one (a resumed run) logs into that run, if the
        store still holds it, else into a new one.
    tracking_uri: the store; a folder (`file:` or a path) is MLflow's file store.
    experiment_name: None names it by the folder holding the run, relative to `runs_root`
        (`train/runs`; a sweep's jobs `train/multiruns/<time>`).
    overrides, sweep: as TensorBoardLogger's. A sweep job's run is named
        `sweep_run_name(overrides)`, any other run by its folder (`2026-05-01_12-00-00`).
    Other arguments as Lightning's.
    """

    def __init__(
        self,
        run_dir: str | Path,
        tracking_uri: str,
        experiment_name: str | None = None,
        runs_root: str | Path | None = None,
        overrides: str = "",
        sweep: bool | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        require_mlflow()
        if is_file_store(tracking_uri):
            # MLflow refuses its file store since 3.13 unless told it is wanted; a user who
            # sets the variable to false gets MLflow's own message.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.run_dir = Path(run_dir)
        name = sweep_run_name(overrides) if is_sweep_job(sweep) and overrides else None
        runs = Path(runs_root) if runs_root is not None else None
        super().__init__(
            experiment_name=experiment_name or experiment_of(self.run_dir, runs),
            run_name=name or self.run_dir.name,
            tracking_uri=tracking_uri,
            tags={"convnet.run_dir": str(self.run_dir.absolute()), **(tags or {})},
            **kwargs,
        )
        # What Lightning's `run_id` argument sets: the run it logs into, None for a new one.
        self._run_id = self._continued_run(kept_run_id(self.run_dir), tracking_uri)
        self._continues = self._run_id is not None
        self._opened = False

    def _continued_run(self, run_id: str | None, tracking_uri: str) -> str | None:
        """Return `run_id` when the store holds it as a live run, else None (a new run)."""
        if run_id is None:
            return None
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            run = MlflowClient(tracking_uri).get_run(run_id)
        except MlflowException:
            run = None
        if run is None or run.info.lifecycle_stage != "active":
            log.warning(
                "%s names MLflow run %s, which %s does not hold: this run logs into a new one",
                self.run_dir / RUN_ID_FILE,
                run_id,
                tracking_uri,
            )
            return None
        return run_id

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The MLflow client (see Lightning's); the first call opens the run: a new one's id
        is written to `<run_dir>/mlflow_run_id`, a continued one is marked running again."""
        from mlflow.exceptions import MlflowException

        try:
            client = super().experiment
        except MlflowException as error:
            # Jobs of a sweep started at once may each create its experiment: those that
            # lose find it made (a deleted one of that name raises again, saying what to do).
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            client = super().experiment
        if not self._opened:
            self._opened = True
            if self._continues:
                client.update_run(self._run_id, status="RUNNING")
            else:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                (self.run_dir / RUN_ID_FILE).write_text(f"{self._run_id}\n")
        return client

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        """Log `params` as the run's MLflow params. MLflow keeps one value per param: in a
        continued run, params it holds already are left as they are (a changed value is
        named in a warning) and only new ones are logged."""
        if not self._continues:
            super().log_hyperparams(params)
            return
        flat = _flatten_dict(_convert_params(params))
        values = {key: str(value)[:250] for key, value in flat.items()}  # as Lightning logs them
        held = self.experiment.get_run(self.run_id).data.params
        changed = sorted(key for key, value in values.items() if key in held and held[key] != value)
        if changed:
            log.warning(
                "MLflow keeps the params of the run this one continues: %s keep their earlier "
                "values (%s)",
                ", ".join(changed),
                ", ".join(f"{key}={held[key]}" for key in changed),
            )
        new = {key: value for key, value in values.items() if key not in held}
        if new:
            super().log_hyperparams(new)
