"""Run directories: fresh for a new run, the same for a resumed one."""

import datetime
from pathlib import Path

import pytest

from convnet.runs import NoRunToResumeError, fresh_run_dir, newest_resumable_run, run_dir


def _run_with_checkpoint(runs: Path, name: str) -> Path:
    folder = runs / name / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(b"x")
    return runs / name


def test_fresh_run_dir_never_reuses_an_existing_directory(tmp_path: Path) -> None:
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    first = fresh_run_dir(tmp_path, now)
    assert first.name == "2026-01-02_03-04-05"
    first.mkdir()
    second = fresh_run_dir(tmp_path, now)
    second.mkdir()
    third = fresh_run_dir(tmp_path, now)
    assert len({first, second, third}) == 3
    assert not third.exists()


def test_last_resumes_the_newest_run_that_has_a_last_checkpoint(tmp_path: Path) -> None:
    _run_with_checkpoint(tmp_path, "2026-01-01_00-00-00")
    newest = _run_with_checkpoint(tmp_path, "2026-01-02_00-00-00")
    (tmp_path / "2026-01-03_00-00-00").mkdir()  # a newer run that never saved
    assert newest_resumable_run(tmp_path) == newest
    assert Path(run_dir(str(tmp_path), "last")) == newest


def test_last_without_any_run_names_the_folder_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(NoRunToResumeError, match="no run to resume") as error:
        newest_resumable_run(tmp_path / "runs")
    assert str(tmp_path / "runs") in str(error.value)


def test_a_checkpoint_inside_a_run_continues_that_run(tmp_path: Path) -> None:
    run = _run_with_checkpoint(tmp_path, "2026-01-01_00-00-00")
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert Path(run_dir(str(tmp_path), str(checkpoint))) == run.resolve()


def test_a_checkpoint_from_elsewhere_starts_a_fresh_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    chosen = Path(run_dir(str(runs), str(tmp_path / "elsewhere.ckpt")))
    assert chosen.parent == runs
    assert not chosen.exists()
