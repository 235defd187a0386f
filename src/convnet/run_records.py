"""A single run's records, held back until it starts: a command that fails first writes none.

A run's folder holds its records: Hydra's `.hydra/*.yaml`, the log `<task>.log`, the
resolved `config.yaml` and `result.json`. Hydra writes the first two before the task
function runs, so a resume that then fails its checks (a truncated checkpoint, a run that
has trained all its epochs, another model) would have rewritten the records of the run it
meant to continue, and a config error would leave a folder that refuses its own corrected
rerun. So for a single run (not a sweep's jobs):

- `.hydra/*.yaml` are held (RunFolderGuard sets `hydra.output_subdir` to null before Hydra
  writes them, and their text is taken when the job starts, as Hydra would have written
  it) and written by `start_records`, which train() calls once every check has passed,
  just before fitting; config.yaml and result.json are first written then too;
- the log file of a run that continues an earlier one is held the same way: its lines are
  written into the file when the run starts, and nowhere if it fails before (a fresh run's
  log is written from the first line: it holds the traceback of a failure, and a folder
  holding only a log is free for the next run).
"""

from __future__ import annotations

import copy
import logging
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict, read_write


@dataclass
class _Held:
    output_subdir: str | None  # Hydra's folder for its files in the run, e.g. .hydra
    log: bool  # whether log lines are held too
    hydra_folder: Path | None = None  # where Hydra's files go: <run>/<output_subdir>
    hydra_files: dict[str, str] = field(default_factory=dict)  # file name -> its YAML


_holding: _Held | None = None
_log_handlers: weakref.WeakSet[RunLogHandler] = weakref.WeakSet()


def hold_records(config: DictConfig, log: bool) -> None:
    """Hold back the records of the single run `config` (Hydra's, before it writes any):
    Hydra's files always, the log's lines when `log` (the folder holds an earlier run)."""
    global _holding
    subdir = config.hydra.output_subdir
    _holding = _Held(output_subdir=None if subdir is None else str(subdir), log=log)
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.output_subdir = None


def take_hydra_files(config: DictConfig) -> None:
    """Keep the text of the `.hydra/*.yaml` files Hydra would have written for `config`
    (called when the job starts: hydra.runtime is complete then)."""
    if _holding is None or _holding.output_subdir is None:
        return  # nothing held, or nothing of Hydra's to write (hydra.output_subdir=null)
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    hydra = copy.deepcopy(HydraConfig.instance().cfg)
    with read_write(hydra.hydra), open_dict(hydra.hydra):
        hydra.hydra.output_subdir = _holding.output_subdir
    _holding.hydra_folder = Path(config.hydra.runtime.output_dir) / _holding.output_subdir
    _holding.hydra_files = {
        "config.yaml": OmegaConf.to_yaml(task),
        "hydra.yaml": OmegaConf.to_yaml(hydra),
        "overrides.yaml": OmegaConf.to_yaml(config.hydra.overrides.task),
    }


def records_held() -> bool:
    """Return whether this process holds back its run's records (the run has not started)."""
    return _holding is not None


def start_records() -> None:
    """Write the records held back so far (`.hydra/*.yaml`, the log's lines); from here on
    the run writes its records as it goes."""
    global _holding
    held, _holding = _holding, None
    if held is None:
        return
    if held.hydra_folder is not None:
        held.hydra_folder.mkdir(parents=True, exist_ok=True)
        for name, text in held.hydra_files.items():
            (held.hydra_folder / name).write_text(text, encoding="utf-8")
    for handler in list(_log_handlers):
        handler.write_held()


class RunLogHandler(logging.FileHandler):
    """The run's log file (configs/hydra/default.yaml): a FileHandler that opens its file at
    the first line it writes, and holds the lines back while a resume has not started."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None) -> None:
        super().__init__(filename, mode, encoding, delay=True)
        self._held: list[logging.LogRecord] | None = [] if _holding and _holding.log else None
        _log_handlers.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        if self._held is None:
            super().emit(record)
            return
        # Its message as of now: the arguments may change before the lines are written.
        kept = copy.copy(record)
        kept.msg, kept.args = record.getMessage(), None
        self._held.append(kept)

    def write_held(self) -> None:
        """Write the lines held so far, and every later one as it comes."""
        self.acquire()
        try:
            held, self._held = self._held or [], None
            for record in held:
                super().emit(record)
        finally:
            self.release()
