"""What one run records for sweep summaries: <run>/result.json, and how it is written.

Every run of scripts/train.py writes `result.json` into its own directory: the status,
the optimized metric, every final metric, epochs trained, seconds taken and, for a
failed run, the reason. It is rewritten after each epoch, so a sweep that is still
running (or was killed) shows how far each job got. A single run writes it first when it
starts training (see convnet.run_records): a command that fails its checks before leaves
the folder, and the run it meant to continue, as they were.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from convnet.checks import ConfigError
from convnet.run_records import records_held

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"

# Statuses. RUNNING stays in the file of a job whose process was killed.
RUNNING = "running"
UNREADABLE = "unreadable"  # a result.json that is not one (summaries go on without it)
OK = "ok"
FAILED = "failed"
INTERRUPTED = "interrupted"


@dataclass
class JobResult:
    """The outcome of one run, as stored in <run>/result.json."""

    status: str
    metric: str | None = None  # name of the optimized metric, e.g. val/acc_best
    value: float | None = None  # its final value; None when the run failed
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: int = 0  # training epochs completed
    seconds: float = 0.0  # wall time of the run
    error: str | None = None  # why it failed: "<ExceptionType>: <first line of the message>"
    overrides: list[str] = field(default_factory=list)  # the run's command-line overrides

    def to_json(self) -> str:
        """Return the result as JSON (non-finite floats as null, which JSON can hold)."""
        content = dataclasses.asdict(self)
        content["value"] = _finite_or_none(self.value)
        content["metrics"] = {k: _finite_or_none(v) for k, v in self.metrics.items()}
        return json.dumps(content, indent=2)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# A write that fails for want of space: the disk is full, or the user's quota spent.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def write_result(run_dir: Path, result: JobResult) -> Path:
    """Write `result` to <run_dir>/result.json atomically (readers never see half a file).

    On a full disk, where the new file cannot be made, the file is rewritten in place: its
    own blocks hold a result, so a run that failed for want of space still says so.
    """
    path = run_dir / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    content = result.to_json()
    try:
        partial.write_text(content)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        if error.errno not in NO_SPACE or not path.is_file():
            raise
        with open(path, "r+", encoding="utf-8") as file:
            file.write(content)
            file.truncate()
    return path


def read_result(run_dir: Path) -> JobResult | None:
    """Return the result recorded in <run_dir>/result.json, or None when there is none;
    raise ValueError when the file holds no result (not JSON, or not an object)."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    content = json.loads(path.read_text(errors="replace"))  # ValueError: not JSON
    if not isinstance(content, dict):
        raise ValueError(f"it holds a JSON {type(content).__name__}, not a result")
    known = {f.name for f in dataclasses.fields(JobResult)}
    result = JobResult(**{k: v for k, v in content.items() if k in known})
    result.metrics = {k: math.nan if v is None else v for k, v in result.metrics.items()}
    return result


def kept_result(run_dir: Path) -> float:
    """Return the optimized metric that the job in `run_dir`, which trained all its epochs
    before its sweep was stopped, recorded then (NaN when it recorded none), saying that the
    continued sweep keeps it: its folder is left as it is and the job is not run again."""
    try:
        result = read_result(run_dir)
    except ValueError:
        result = JobResult(UNREADABLE)
    if result is not None and result.status == OK:
        value = math.nan if result.value is None else result.value
        log.info(
            "%s trained all its epochs before this sweep stopped: its result (%s %s) and "
            "folder are kept, and it is not run again",
            run_dir,
            result.metric,
            f"{value:.4g}",
        )
        return value
    status = result.status if result is not None else f"no {RESULT_FILE}"
    log.warning(
        "%s trained all its epochs before this sweep stopped, but its result is %s: its "
        "folder is kept as it is; score its checkpoints with scripts/eval.py ckpt_path=%s",
        run_dir,
        status,
        run_dir / "checkpoints" / "last.ckpt",
    )
    return math.nan


def describe(error: BaseException) -> str:
    """Return "<ExceptionType>: <first line of its message>", short enough for a table."""
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__


class JobRecorder(Callback):
    """Runs training and records its outcome in <run>/result.json.

    Also a Lightning callback (pass it to `convnet.train.train(cfg, callbacks=[recorder])`)
    that counts epochs and rewrites the file after each one. Inside a sweep a run that
    raises is recorded as failed, its traceback goes to the run's log, and NaN is returned
    so the sweep goes on (Optuna marks a trial that returns NaN as failed); a single run
    re-raises.
    """

    def __init__(
        self,
        run_dir: str | Path,
        metric: str | None,
        overrides: Sequence[str] = (),
        in_sweep: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.in_sweep = in_sweep
        self.result = JobResult(status=RUNNING, metric=metric, overrides=list(overrides))
        self._start = time.perf_counter()

    @classmethod
    def for_run(cls, cfg: DictConfig) -> JobRecorder:
        """Return the recorder of the Hydra run `cfg` (its folder, metric and overrides)."""
        hydra_cfg = HydraConfig.get()
        return cls(
            cfg.paths.output_dir,
            cfg.get("optimized_metric"),
            list(hydra_cfg.overrides.task),
            in_sweep=hydra_cfg.mode == RunMode.MULTIRUN,
        )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # The first record of a single run: it has passed its checks and starts.
        self._save()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.result.epochs = trainer.current_epoch + 1
        self._save()

    @rank_zero_only
    def _save(self) -> None:
        # Only rank 0 writes: under DDP every process runs the same job in the same folder.
        if records_held():
            return  # a single run that has not started: it writes no record yet
        self.result.seconds = time.perf_counter() - self._start
        write_result(self.run_dir, self.result)

    def run(self, train: Callable[[], dict[str, float]]) -> float | None:
        """Return the optimized metric of `train()` (None when no metric is optimized), or
        NaN for a failed run in a sweep."""
        self._start = time.perf_counter()
        self._save()
        try:
            metrics = train()
            value = metric_value(metrics, self.result.metric)
        except Exception as error:
            return self._failed(error)
        except BaseException as error:  # Ctrl+C, or the launcher stopping the job
            self.result.status, self.result.error = INTERRUPTED, describe(error)
            self._save_or_log()
            raise
        self.result.metrics = metrics
        self.result.value = value
        if value is not None and not math.isfinite(value):
            # Nothing raised, yet the score is unusable: a failure all the same.
            self.result.status = FAILED
            self.result.error = f"{self.result.metric} is {value}"
            log.error("run failed: %s", self.result.error)
        else:
            self.result.status = OK
        self._save()
        return value

    def _failed(self, error: Exception) -> float:
        self.result.status, self.result.error = FAILED, describe(error)
        self._save_or_log()
        if not self.in_sweep:
            raise error
        # The traceback lands in this job's log file; the sweep moves on to the next job.
        log.exception("run failed, recorded in %s", self.run_dir / RESULT_FILE)
        return math.nan

    def _save_or_log(self) -> None:
        """Record how the run ended; a record that cannot be written is logged, so that the
        run's own error, the news, is the one raised."""
        try:
            self._save()
        except OSError as unsaved:
            log.error("could not record the run's end in %s: %s", self.run_dir, unsaved)


def metric_value(metrics: dict[str, float], name: str | None) -> float | None:
    """Return the metric `name` for a sweeper, with an error listing what exists."""
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(
            f"optimized_metric={name} was not logged; logged metrics: {', '.join(sorted(metrics))}"
        )
    return metrics[name]
