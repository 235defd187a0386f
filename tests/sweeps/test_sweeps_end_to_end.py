"""Grids and Optuna studies run through `scripts/train.py -m`, checked against the jobs'
own records: TensorBoard events, logs and the Optuna storage."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from convnet.sweeps.results import INTERRUPTED, OK, read_result
from tests.sweeps.conftest import TINY_DIGITS

METRIC = "val/acc_best"


def _rows(sweep: Path) -> list[dict[str, str]]:
    with (sweep / "summary.csv").open() as file:
        return list(csv.DictReader(file))


def _job_folders(sweep: Path) -> list[str]:
    return sorted((p.name for p in sweep.iterdir() if p.name.isdigit()), key=int)


def _best_val_acc_in_events(job: Path) -> float:
    (run,) = (job / "tensorboard").iterdir()  # the job's run, named by its overrides
    events = EventAccumulator(str(run))
    events.Reload()
    return max(event.value for event in events.Scalars("val/acc"))


def _assert_summary_files(sweep: Path) -> None:
    assert (sweep / "summary.md").read_text().count("\n| ") >= 2
    assert (sweep / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_grid_is_summarized_best_first_and_its_diverged_jobs_are_failed(
    run_sweep, tmp_path: Path
) -> None:
    result = run_sweep(
        *TINY_DIGITS,
        "logger=tensorboard",
        "trainer.limit_train_batches=4",
        "optimizer.lr=0.05,1e30",
        "module.label_smoothing=0.0,0.1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    assert _job_folders(sweep) == ["0", "1", "2", "3"]
    rows = _rows(sweep)
    assert len(rows) == 4
    _assert_summary_files(sweep)

    # The diverging rate fails in both of its jobs, the others complete.
    ok = [row for row in rows if row["status"] == OK]
    failed = [row for row in rows if row["status"] != OK]
    assert [float(row["optimizer.lr"]) for row in ok] == [0.05, 0.05]
    assert [float(row["optimizer.lr"]) for row in failed] == [1e30, 1e30]
    assert rows[2:] == failed  # failures sort last
    for row in failed:
        assert "DivergenceError" in row["error"]
        log = (sweep / row["jobs"] / "train.log").read_text()
        assert "Traceback" in log and "DivergenceError" in log

    # The best row is the job whose own TensorBoard events hold the best val/acc.
    logged = {row["jobs"]: _best_val_acc_in_events(sweep / row["jobs"]) for row in ok}
    best = max(logged.values())
    assert float(rows[0][f"{METRIC} mean"]) == pytest.approx(best, abs=1e-6)
    assert logged[rows[0]["jobs"]] == best


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*SQLAlchemy 2.0")  # optuna 2 on SQLAlchemy 1.4
def test_an_interrupted_optuna_study_resumes_with_the_same_command(
    run_sweep, tmp_path: Path
) -> None:
    import optuna

    command = [
        *TINY_DIGITS,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        "model.layers=[1,1,1]",
        "model.widths=[4,8,16]",
        # Ctrl+C in the third trial.
        "+callbacks.interrupt._target_=tests.sweeps.interrupt.InterruptRun",
        f"+callbacks.interrupt.counter={tmp_path / 'runs_started'}",
        "+callbacks.interrupt.at=2",
    ]
    first = run_sweep(*command)
    assert first.returncode != 0
    sweep = tmp_path / "outputs" / "train" / "multiruns" / "optuna_digits_resnet20"
    assert _job_folders(sweep) == ["0", "1", "2"]
    assert read_result(sweep / "2").status == INTERRUPTED
    log = (sweep / "2" / "train.log").read_text()
    assert "continue the study with the same command: it goes on from its storage" in log

    second = run_sweep(*command)
    assert second.returncode == 0, second.stderr[-3000:]
    study = optuna.load_study(study_name="digits_resnet20", storage=f"sqlite:///{sweep}/optuna.db")
    assert [trial.number for trial in study.trials] == [0, 1, 2, 3, 4]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert [trial.number for trial in complete] == [0, 1, 3, 4]  # n_trials=4 finished
    # Job folder N is trial N: same score, same parameters.
    assert _job_folders(sweep) == ["0", "1", "2", "3", "4"]
    for trial in complete:
        result = read_result(sweep / str(trial.number))
        assert result.value == pytest.approx(trial.value)
        assert f"optimizer={trial.params['optimizer']}" in result.overrides

    rows = _rows(sweep)
    assert len(rows) == 5
    assert [row["status"] for row in rows] == [OK] * 4 + [INTERRUPTED]
    assert float(rows[0][f"{METRIC} mean"]) == pytest.approx(study.best_value)
    _assert_summary_files(sweep)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_grid_stopped_by_ctrl_c_continues_in_its_folder_with_ckpt_path_last(
    run_sweep, tmp_path: Path
) -> None:
    command = [
        *TINY_DIGITS,
        "trainer.max_epochs=2",
        "callbacks=minimal",
        "callbacks.rich_progress_bar=null",
        "logger=tensorboard",
        "seed=0,1,2",
        # Ctrl+C as the second job starts its second epoch.
        "+callbacks.interrupt._target_=tests.sweeps.interrupt.InterruptRun",
        f"+callbacks.interrupt.counter={tmp_path / 'runs_started'}",
        "+callbacks.interrupt.at=1",
        "+callbacks.interrupt.epoch=1",
    ]
    first = run_sweep(*command)
    assert first.returncode != 0
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    assert _job_folders(sweep) == ["0", "1"]
    assert read_result(sweep / "0").status == OK
    assert read_result(sweep / "1").status == INTERRUPTED
    assert (
        f"continue the sweep with the same command and hydra.sweep.dir={sweep}"
        in (sweep / "1" / "train.log").read_text()
    )
    finished = _files(sweep / "0")

    second = run_sweep(*command, f"hydra.sweep.dir={sweep}", "ckpt_path=last")
    assert second.returncode == 0, second.stderr[-3000:]
    assert _job_folders(sweep) == ["0", "1", "2"]
    # The job that had finished is not run again: its checkpoints, events and result are
    # as they were; its log and Hydra's records of the command only gain lines.
    now = _files(sweep / "0")
    for name, content in finished.items():
        if name == "train.log":
            assert now[name].startswith(content)
        elif not name.startswith(".hydra"):
            assert now[name] == content, name
    assert "its result (val/acc_best" in now["train.log"].decode()
    # The interrupted job resumed (in its TensorBoard run), the one not started started.
    for job in ("1", "2"):
        result = read_result(sweep / job)
        assert (result.status, result.epochs) == (OK, 2), (job, result.error)
    (run,) = (sweep / "1" / "tensorboard").iterdir()
    events = EventAccumulator(str(run))
    events.Reload()
    assert [event.step for event in events.Scalars("val/acc")] == [4, 9]
    log = (sweep / "2" / "train.log").read_text()
    assert "starts from scratch" in log and "resuming from" not in log
    # One setting, three seeds, all of them finished.
    (row,) = _rows(sweep)
    assert row["status"] == OK and row["jobs"] == "0 1 2"
    assert "ckpt_path" not in row

    # The grid given in another order: job 0 would be seed 2 in the folder of seed 0's run.
    before = {job: _files(sweep / job) for job in ("0", "1", "2")}
    reordered = [arg if arg != "seed=0,1,2" else "seed=2,0,1" for arg in command]
    third = run_sweep(*reordered, f"hydra.sweep.dir={sweep}", "ckpt_path=last")
    assert third.returncode != 0
    said = third.stdout + third.stderr
    refused = (
        r"its job folder 0 holds the run of `seed=0`, and job 0 of this sweep is `seed=2` "
        r"\(where they differ\).* Nothing was launched"
    )
    assert re.search(refused, said), said[-2000:]
    assert {job: _files(sweep / job) for job in ("0", "1", "2")} == before

    # Without its folder, a new time-named one: the sweep to continue is asked for.
    fourth = run_sweep(*command, "ckpt_path=last")
    assert fourth.returncode != 0
    said = fourth.stdout + fourth.stderr
    assert f"give the folder of the sweep to continue (the newest: hydra.sweep.dir={sweep})" in said
    assert list((tmp_path / "outputs" / "train" / "multiruns").iterdir()) == [sweep]
