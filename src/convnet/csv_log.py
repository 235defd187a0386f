"""The CSV table of a run, `<run>/csv/metrics.csv`: a resumed run's rows go after the
earlier ones, and the rows of a killed run's steps past its checkpoint, which the resumed run
logs again, move to `metrics_purged.csv` beside it (convnet.loggers re-exports CSVLogger)."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

log = logging.getLogger(__name__)

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
