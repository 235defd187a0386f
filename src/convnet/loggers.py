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

import csv
import hashlib
import logging
import os
import re
from argparse import Namespace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from convnet.checks import ConfigError

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


PURGED_FILE = "metrics_purged.csv"  # <run>/csv/: rows a resumed run logs again


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, which goes on after the metrics.csv and hparams.yaml it
    finds in its folder (a resumed run's) instead of deleting them.

    purge_step: a resumed run's first step (the global step of its checkpoint). A run killed
        after it logged steps past its last checkpoint logs them again when resumed; its
        rows from `purge_step` on move to metrics_purged.csv, so metrics.csv has each step
        once, as TensorBoard hides them (the TensorBoard logger's purge_step).
    """

    def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
        super().__init__(log_dir)
        kept = Path(log_dir) / self.NAME_HPARAMS_FILE
        if kept.is_file():
            try:
                earlier = yaml.safe_load(kept.read_text())
            except yaml.YAMLError:
                earlier = None
            self.hparams = earlier if isinstance(earlier, dict) else {}
        if purge_step is not None and self._fs.isfile(self.metrics_file_path):
            self._purge_from(purge_step)

    def _check_log_dir_exists(self) -> None:
        # Lightning's deletes metrics.csv. Keeping its columns, rows are appended to it (with
        # a new column, Lightning's writer rewrites the file with every earlier row).
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])

    def _purge_from(self, step: int) -> None:
        """Move the rows of steps `step` and later out of metrics.csv, into PURGED_FILE."""
        metrics = Path(self.metrics_file_path)
        with metrics.open(newline="") as file:
            rows = list(csv.DictReader(file))
        purged = [row for row in rows if _step_of(row) >= step]
        if not purged:
            return
        # Kept first (appended to what an earlier resume purged), then metrics.csv replaced
        # whole: a crash in between leaves a row in both files, never in neither.
        purged_path = metrics.with_name(PURGED_FILE)
        self._write_rows(purged_path, purged, header=not purged_path.is_file())
        partial = metrics.with_name(f".{metrics.name}.partial")
        partial.unlink(missing_ok=True)
        self._write_rows(partial, [row for row in rows if _step_of(row) < step], header=True)
        os.replace(partial, metrics)
        log.info(
            "%s: %d rows of steps from %d on, logged after the checkpoint this run resumes "
            "from, moved to %s",
            metrics,
            len(purged),
            step,
            PURGED_FILE,
        )

    def _write_rows(self, path: Path, rows: list[dict[str, str]], header: bool) -> None:
        """Append `rows` to `path` in metrics.csv's columns, the header first if `header`."""
        with path.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys, extrasaction="ignore")
            if header:
                writer.writeheader()
            writer.writerows(rows)


def _step_of(row: dict[str, str]) -> float:
    """Return a metrics.csv row's step; a row without one comes first."""
    try:
        return float(row.get("step") or "-inf")
    except ValueError:
        return float("-inf")


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger writing `<save_dir>/<name>/metrics.csv` (a row per step that
    logged, each metric a column) and hparams.yaml; a resumed run appends to them.

    purge_step: a resumed run's first step: the rows of that step and later move to
        metrics_purged.csv (see _AppendingWriter). Other arguments as Lightning's; `version`
        "" writes into `<save_dir>/<name>` itself.
    """

    def __init__(
        self,
        save_dir: str | Path,
        name: str = "csv",
        version: str | int | None = "",
        purge_step: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(save_dir, name=name, version=version, **kwargs)
        self._purge_step = purge_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir, purge_step=self._purge_step)
        return self._experiment


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
