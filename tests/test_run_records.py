"""A run's folder is its own, and a command that fails leaves every earlier record as it was:
records are written once a run starts training, result.json says how a failed run ended, and
a resume says which of its optimizer and scheduler values the checkpoint overrides."""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import yaml
from lightning.pytorch.callbacks import Callback

from convnet import run_records
from convnet.config import ConfigError
from convnet.run_records import (
    RunLogHandler,
    hold_records,
    records_held,
    start_records,
    take_hydra_files,
)
from convnet.runs import run_contents
from convnet.sweeps.results import FAILED, OK, JobRecorder, read_result
from convnet.train import train
from tests.compose import REPO, TINY_SHAPES, train_script
from tests.scripts import Script, start_script, wait_for

QUIET = ["callbacks=minimal", "callbacks.rich_progress_bar=null"]
# Tiny shapes: the records are what these tests read, not what the data teaches.
FAST = ["debug=fast", *QUIET, *TINY_SHAPES]


@pytest.fixture(autouse=True)
def _nothing_held(monkeypatch: pytest.MonkeyPatch) -> None:
    # Records held by one test must not leak into the next (the state is per process).
    monkeypatch.setattr(run_records, "_holding", None)


def _hashes(folder: Path) -> dict[str, tuple[str, int]]:
    """Return each file under `folder` (by relative path) with its SHA-256 and mtime."""
    return {
        str(path.relative_to(folder)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_held_records_are_written_as_hydra_writes_them_once_the_run_starts(
    train_config, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    cfg = train_config("optimizer.lr=0.1", output_dir=run)
    hold_records(cfg, log=True)
    assert cfg.hydra.output_subdir is None and records_held()  # Hydra writes none
    take_hydra_files(cfg)
    handler = RunLogHandler(str(run / "train.log"))
    logger = logging.getLogger("tests.held")
    logger.addHandler(handler)
    try:
        detail = ["before"]
        logger.warning("held: %s", detail)
        detail[0] = "changed"  # the line says what it said when it was logged
        assert not (run / ".hydra").exists() and not (run / "train.log").exists()
        start_records()
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert not records_held()
    assert (run / "train.log").read_text().splitlines() == ["held: ['before']", "after"]
    hydra = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text())["hydra"]
    assert hydra["output_subdir"] == ".hydra" and hydra["runtime"]["output_dir"] == str(run)
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert "optimizer.lr=0.1" in overrides
    assert yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["optimizer"]["lr"] == 0.1


def test_a_fresh_runs_log_is_written_from_its_first_line(train_config, tmp_path: Path) -> None:
    cfg = train_config(output_dir=tmp_path / "run")
    hold_records(cfg, log=False)
    handler = RunLogHandler(str(tmp_path / "run" / "train.log"))
    handler.emit(logging.makeLogRecord({"msg": "a config error's traceback"}))
    handler.close()
    assert (tmp_path / "run" / "train.log").read_text() == "a config error's traceback\n"


def test_a_recorder_writes_nothing_while_the_records_are_held(train_config, tmp_path: Path) -> None:
    hold_records(train_config(output_dir=tmp_path / "run"), log=True)
    recorder = JobRecorder(tmp_path / "run", "val/acc_best")

    def fails_its_checks() -> dict[str, float]:
        raise ConfigError("bad")

    with pytest.raises(ConfigError, match="bad"):
        recorder.run(fails_its_checks)
    assert read_result(tmp_path / "run") is None


def _full_disk(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Callable[[], None]:
    """Return a function that fills the disk of `folder`: from then on no file there can be
    made or grown (ENOSPC), as on a disk without a free block; an existing file can still be
    rewritten in place (mode r+)."""
    full = []
    real_open = io.open

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        inside = isinstance(file, (str, os.PathLike)) and Path(file).is_relative_to(folder)
        if full and inside and mode.strip("bt") not in ("r", "r+"):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_on_full_disk)
    monkeypatch.setattr(io, "open", open_on_full_disk)
    return lambda: full.append(True)


class _FillTheDisk(Callback):
    def __init__(self, fill: Callable[[], None]) -> None:
        self.fill = fill

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fill()


def test_a_run_the_full_disk_stops_records_that_it_failed_and_why(
    train_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    cfg = train_config(*FAST, "test=false", "logger=none", output_dir=run)
    fill = _full_disk(monkeypatch, run)
    recorder = JobRecorder(run, "val/acc_best")
    with pytest.raises(OSError) as raised:
        recorder.run(lambda: train(cfg, callbacks=[recorder, _FillTheDisk(fill)]))
    monkeypatch.undo()
    assert raised.value.errno == errno.ENOSPC  # the run's own error, not the record's
    result = read_result(run)
    assert result.status == FAILED and result.epochs == 1
    assert "checkpoint" in result.error and str(errno.ENOSPC) in result.error
    assert not list(run.glob("*.partial"))


def test_resuming_with_other_optimizer_or_scheduler_values_names_them_and_what_wins(
    train_config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train(train_config(*FAST, "test=false", "logger=none"))
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    resumed = train_config(
        *FAST,
        "test=false",
        "logger=none",
        "trainer.max_epochs=2",
        "ckpt_path=last",
        "optimizer.lr=0.5",
        "scheduler.pct_start=0.5",
    )
    with caplog.at_level(logging.WARNING, logger="convnet.resume"):
        train(resumed)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "convnet.resume"]
    assert line.startswith(f"resuming {checkpoint}: optimizer.lr=0.5 (the checkpoint's: 0.2) is")
    assert "ignored: a resumed run restores the checkpoint's optimizer state" in line
    assert "the schedule follows scheduler.pct_start=0.5 (the checkpoint's: 0.25)" in line
    assert f"model.pretrained={checkpoint} and no ckpt_path" in line


def test_resuming_with_another_optimizer_stops_before_anything_is_written(
    train_config, tmp_path: Path
) -> None:
    train(train_config(*FAST, "test=false", "logger=none"))
    before = _hashes(tmp_path / "run")
    other = train_config(*FAST, "trainer.max_epochs=2", "ckpt_path=last", "optimizer=adamw")
    with pytest.raises(ConfigError, match=r"optimizer\._target_=torch\.optim\.AdamW: \S+ was "):
        train(other)
    assert _hashes(tmp_path / "run") == before


def test_resuming_another_network_or_data_set_stops_and_other_data_values_are_named(
    train_config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train(train_config(*FAST, "test=false", "logger=none"))
    before = _hashes(tmp_path / "run")
    resume = [*FAST, "test=false", "logger=none", "trainer.max_epochs=2", "ckpt_path=last"]
    # Weights of these shapes load all the same: only the stored config tells them apart.
    for other, named in [
        ("model.activation=gelu", r"model\.activation=gelu \(the checkpoint's: relu\)"),
        ("data.source.seed=1", r"data\.source\.seed=1 \(the checkpoint's: 0\)"),
        ("data.source.num_train=1280", r"data\.source\.num_train=1280 \(the checkpoint's: 640\)"),
    ]:
        with pytest.raises(ConfigError, match=rf"^{named}: \S+ was trained with the checkpoint"):
            train(train_config(*resume, other))
        assert _hashes(tmp_path / "run") == before
    with caplog.at_level(logging.WARNING, logger="convnet.resume"):
        train(train_config(*resume, "data.batch_size=32"))
    (line,) = [r.getMessage() for r in caplog.records if r.name == "convnet.resume"]
    assert line.endswith(
        "with other data values: data.batch_size=32 (the checkpoint's: 64); the rest of the "
        "run trains with them"
    )


# End to end: scripts/train.py as a user runs it.


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a root folder whose outputs/ hold one finished run (trained all its epochs)."""
    root = tmp_path_factory.mktemp("finished")
    done = train_script(root, *FAST)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def _run_of(root: Path) -> Path:
    (run,) = (root / "outputs" / "train" / "runs").iterdir()
    return run


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-300])


# (what the command adds to the run's checkpoint, what it prints last, how it spoils the run)
FAILED_RESUMES = {
    "another model": (["model=resnet20", "trainer.max_epochs=2"], "ConfigError: ", None),
    "another model of a finished run": (["model=resnet20"], "ConfigError: ", None),
    "another optimizer": (["optimizer=adamw", "trainer.max_epochs=2"], "ConfigError: ", None),
    "a truncated checkpoint": (["trainer.max_epochs=2"], "CheckpointError: ", _truncate),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", [*FAILED_RESUMES, "last of a finished run"])
def test_a_failed_resume_leaves_every_file_of_the_run_as_it_was(
    finished_run: Path, tmp_path: Path, case: str
) -> None:
    shutil.copytree(finished_run / "outputs", tmp_path / "outputs")
    run = _run_of(tmp_path)
    if case == "last of a finished run":
        command, printed = [*FAST, "ckpt_path=last"], "ConfigError: ckpt_path=last: "
    else:
        extra, printed, spoil = FAILED_RESUMES[case]
        if spoil is not None:
            spoil(run / "checkpoints" / "last.ckpt")
        command = [*FAST, f"ckpt_path={run}/checkpoints/last.ckpt", *extra]
    before = _hashes(run)
    done = train_script(tmp_path, *command)
    assert done.returncode == 1
    assert printed in done.stderr and "Traceback" not in done.stderr
    assert _hashes(run) == before  # train.log, .hydra/, config.yaml and result.json included
    assert [p.name for p in (tmp_path / "outputs" / "train" / "runs").iterdir()] == [run.name]


@pytest.mark.slow
def test_a_run_that_fails_its_config_check_leaves_its_folder_free_for_the_corrected_run(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "mine"
    done = train_script(tmp_path, *FAST, f"hydra.run.dir={folder}", "data.batch_size=0")
    assert done.returncode == 1
    assert "ConfigError: invalid config:\n  data.batch_size=0" in done.stderr
    assert run_contents(folder) == []  # at most the log of the failure, with its traceback
    done = train_script(tmp_path, *FAST, f"hydra.run.dir={folder}", "data.batch_size=64")
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_result(folder).status == OK


def _start_at_the_same_instant(root: Path, runs: int) -> list[Script]:
    """Start `runs` train scripts (seed=0, 1...) that pass one barrier together."""
    barrier = root / "barrier"
    barrier.mkdir()
    go = barrier / "go"
    script = REPO / "tests" / "same_instant.py"
    processes = [
        start_script([script, barrier / f"{n}.ready", go, *FAST, f"seed={n}"], root, merge=True)
        for n in range(runs)
    ]
    # Every process waits at the barrier.
    wait_for(lambda: len(list(barrier.glob("*.ready"))) == runs, *processes, timeout=300)
    go.touch()  # all go
    return processes


@pytest.mark.slow
def test_runs_started_at_the_same_instant_get_a_folder_each_with_its_own_records(
    tmp_path: Path,
) -> None:
    runs = 3
    for process in _start_at_the_same_instant(tmp_path, runs):
        assert process.wait(timeout=600) == 0, process.output()[0][-3000:]
    folders = sorted((tmp_path / "outputs" / "train" / "runs").iterdir())
    stamp = "2026-01-02_03-04-05"  # tests/same_instant.py's stopped clock
    assert [f.name for f in folders] == [stamp] + [f"{stamp}_{n}" for n in range(1, runs)]
    seeds = set()
    for folder in folders:
        result = read_result(folder)
        assert result.status == OK
        (seed,) = [o for o in result.overrides if o.startswith("seed=")]
        assert seed in yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        assert f"seed: {seed[5:]}\n" in (folder / "config.yaml").read_text()
        checkpoints = sorted(p.name for p in (folder / "checkpoints").iterdir())
        assert len(checkpoints) == 2 and "last.ckpt" in checkpoints  # the best and last
        assert not any("-v1" in name for name in checkpoints)
        assert len(list((folder / "tensorboard").glob("events.out.tfevents.*"))) == 2
        assert (folder / "train.log").read_text().count("data: {'train'") == 1
        seeds.add(seed)
    assert seeds == {f"seed={n}" for n in range(runs)}


@pytest.mark.slow
def test_resuming_a_run_still_training_elsewhere_stops_and_leaves_it_as_it_was(
    finished_run: Path, tmp_path: Path
) -> None:
    from tests.test_run_lock import hold_in_another_process

    shutil.copytree(finished_run / "outputs", tmp_path / "outputs")
    run = _run_of(tmp_path)
    holder = hold_in_another_process(run)  # the run, as if training in another terminal
    try:
        before = _hashes(run)
        done = train_script(tmp_path, *FAST, "ckpt_path=last", "trainer.max_epochs=2")
        after = _hashes(run)
    finally:
        holder.communicate("")
    assert done.returncode == 1
    assert f"RunInUseError: {run} is being trained in by process {holder.pid}" in done.stderr
    assert "Traceback" not in done.stderr
    assert after == before  # train.log, .hydra/, config.yaml and result.json included
    # Once it has ended, the same command continues the run.
    done = train_script(tmp_path, *FAST, "ckpt_path=last", "trainer.max_epochs=2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_result(run).status == OK
