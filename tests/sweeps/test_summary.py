"""Sweep summaries from job folders: grouping of repeats, order, files, the script."""

from __future__ import annotations

import csv
import runpy
import statistics
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from convnet.sweeps.report import short_value, write_report
from convnet.sweeps.results import FAILED, OK, UNREADABLE, JobResult, write_result
from convnet.sweeps.summary import summarize
from tests.compose import REPO


def _job(
    sweep: Path,
    name: str,
    overrides: list[str],
    value: float | None,
    metric: str = "val/acc_best",
    error: str | None = None,
) -> Path:
    status = OK if error is None else FAILED
    result = JobResult(status, metric, value, {}, epochs=3, seconds=10.0, error=error)
    result.overrides = overrides
    return write_result(sweep / name, result).parent


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


def test_repeats_over_seed_and_fold_form_one_setting_with_mean_and_std(tmp_path: Path) -> None:
    scores = {("0.1", "0", "0"): 0.80, ("0.1", "1", "1"): 0.90, ("0.2", "0", "0"): 0.70}
    scores |= {("0.2", "1", "1"): 0.74}
    for number, ((lr, seed, fold), score) in enumerate(scores.items()):
        overrides = ["data=digits", f"optimizer.lr={lr}", f"seed={seed}", f"++data.fold={fold}"]
        _job(tmp_path, str(number), overrides, score)
    summary = summarize(tmp_path)
    assert summary.params == ["optimizer.lr"]
    assert summary.repeat_keys == ["seed", "data.fold"]
    assert summary.fixed == {"data": "digits"}
    best, second = summary.settings
    assert best.params == {"optimizer.lr": "0.1"}
    assert [job.name for job in best.jobs] == ["0", "1"]
    assert best.mean == pytest.approx(0.85)
    assert best.std == pytest.approx(statistics.stdev([0.80, 0.90]))
    assert second.mean == pytest.approx(0.72)


def test_a_loss_is_minimized_and_failures_sort_last_with_their_reason(tmp_path: Path) -> None:
    for number, (lr, loss) in enumerate([("0.1", 0.5), ("0.2", 0.3), ("0.3", None)]):
        error = "DivergenceError: training diverged" if loss is None else None
        _job(tmp_path, str(number), [f"optimizer.lr={lr}"], loss, "val/loss", error)
    summary = summarize(tmp_path)
    assert summary.direction == "minimize"
    assert [s.params["optimizer.lr"] for s in summary.settings] == ["0.2", "0.1", "0.3"]
    assert summary.settings[-1].status == FAILED
    assert summary.settings[-1].error.startswith("DivergenceError")


def test_the_optuna_sweepers_direction_wins_over_the_metric_name(tmp_path: Path) -> None:
    for number, score in enumerate([0.2, 0.4]):
        job = _job(tmp_path, str(number), [f"module.label_smoothing={number}"], score, "val/acc")
        hydra = {"hydra": {"sweeper": {"direction": "minimize"}}}
        (job / ".hydra").mkdir()
        OmegaConf.save(OmegaConf.create(hydra), job / ".hydra" / "hydra.yaml")
    summary = summarize(tmp_path)
    assert summary.direction == "minimize"
    assert summary.settings[0].mean == pytest.approx(0.2)


def test_a_job_that_never_wrote_a_result_is_listed_as_running(tmp_path: Path) -> None:
    _job(tmp_path, "0", ["seed=0", "optimizer.lr=0.1"], 0.5)
    started = tmp_path / "1" / ".hydra"
    started.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(["seed=0", "optimizer.lr=0.2"]), started / "overrides.yaml")
    summary = summarize(tmp_path)
    assert [s.status for s in summary.settings] == [OK, "running"]


def test_a_result_file_that_holds_no_result_is_listed_unreadable_and_the_rest_summarized(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _job(tmp_path, "0", ["seed=0"], 0.5)
    for name, text in [("1", "{not json"), ("2", "[1, 2]")]:
        _job(tmp_path, name, [f"seed={name}"], 0.9)
        (tmp_path / name / "result.json").write_text(text)
        (tmp_path / name / ".hydra").mkdir()
        OmegaConf.save(OmegaConf.create([f"seed={name}"]), tmp_path / name / ".hydra" / "o.yaml")
    _job(tmp_path, "3", ["seed=3"], 0.7)
    (setting,) = summarize(tmp_path).settings
    assert [job.status for job in setting.jobs] == [OK, UNREADABLE, UNREADABLE, OK]
    assert setting.mean == pytest.approx(0.6)
    assert "2/result.json is not a result (it holds a JSON list, not a result)" in caplog.text
    write_report(tmp_path, show_table=False)
    # Epochs: the mean of 3, 0, 0 and 3, to one decimal.
    markdown = (tmp_path / "summary.md").read_text()
    assert "| 1 | 0,1,2,3 | 0.6000 ± 0.1414 | 1.5 |" in markdown, markdown


def test_job_folders_are_read_in_numeric_order(tmp_path: Path) -> None:
    for number in (10, 2, 1):
        _job(tmp_path, str(number), [f"seed={number}"], 0.5)
    (setting,) = summarize(tmp_path).settings
    assert [job.name for job in setting.jobs] == ["1", "2", "10"]


def test_the_report_writes_csv_markdown_and_png_best_first(tmp_path: Path) -> None:
    for number, (lr, score) in enumerate([("0.01", 0.6), ("0.1", 0.9), ("1.0", None)]):
        error = "RuntimeError: CUDA out of memory" if score is None else None
        _job(tmp_path, str(number), [f"optimizer.lr={lr}", "optimizer=sgd"], score, error=error)
    write_report(tmp_path, show_table=False)
    rows = _rows(tmp_path / "summary.csv")
    assert [row["jobs"] for row in rows] == ["1", "0", "2"]
    assert rows[0]["val/acc_best mean"] == "0.9"
    assert rows[2]["error"] == "RuntimeError: CUDA out of memory"
    markdown = (tmp_path / "summary.md").read_text()
    assert "| 1 | 1 | 0.1 | 0.9000 |" in markdown
    assert "fixed: optimizer=sgd" in markdown
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"


def test_a_folder_without_jobs_is_refused_with_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="holds no job folders"):
        summarize(tmp_path)


def test_the_script_summarizes_a_given_sweep(tmp_path: Path, monkeypatch) -> None:
    _job(tmp_path, "0", ["seed=0"], 0.5)
    _job(tmp_path, "1", ["seed=1"], 0.7)
    monkeypatch.setattr(sys, "argv", ["sweep_summary.py", str(tmp_path)])
    runpy.run_path(str(REPO / "scripts" / "sweep_summary.py"), run_name="__main__")
    (row,) = _rows(tmp_path / "summary.csv")
    assert float(row["val/acc_best mean"]) == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("value", "shown"),
    [("0.012345678", "0.01235"), ("64", "64"), ("1e30", "1e+30"), ("adamw", "adamw")],
)
def test_override_values_are_shown_short(value: str, shown: str) -> None:
    assert short_value(value) == shown


def test_a_job_folders_yaml_is_read_as_written_and_never_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sweep folder may come from anyone: `${oc.env:...}` would read this machine's
    # environment into the summary, and other resolvers could do more.
    monkeypatch.setenv("CONVNET_SECRET", "s3cret")
    _job(tmp_path, "0", ["optimizer.lr=0.1"], 0.9)
    running = tmp_path / "1" / ".hydra"
    running.mkdir(parents=True)
    (running / "overrides.yaml").write_text("- optimizer.lr=${oc.env:CONVNET_SECRET}\n")
    (running / "hydra.yaml").write_text(
        "hydra:\n  sweeper:\n    direction: ${oc.env:CONVNET_SECRET}\n"
    )
    summary = summarize(tmp_path)
    shown = {job.name: job.overrides for job in summary.jobs}
    assert shown["1"] == {"optimizer.lr": "${oc.env:CONVNET_SECRET}"}
    assert summary.direction == "maximize"  # guessed from the metric, not the file


@pytest.mark.parametrize(
    ("values", "integer_ticks"), [(["0", "1", "3"], True), (["0.5", "1", "3"], False)]
)
def test_an_integer_parameters_panel_has_ticks_at_integers_only(values, integer_ticks) -> None:
    from matplotlib.figure import Figure

    from convnet.sweeps.plot import _panel
    from convnet.sweeps.summary import Job, Setting, SweepSummary

    jobs = [
        Job(str(i), Path(str(i)), {"seed": value}, JobResult(OK, "val/acc", 0.5 + i / 10))
        for i, value in enumerate(values)
    ]
    summary = SweepSummary(Path("sweep"), "val/acc", "maximize", ["seed"], [], {}, [])
    summary.settings = [Setting({"seed": job.overrides["seed"]}, [job]) for job in jobs]
    figure = Figure()
    axes = figure.add_subplot()
    _panel(axes, "seed", summary, None)
    figure.canvas.draw()  # the locator places the ticks
    low, high = axes.get_xlim()
    ticks = [tick for tick in axes.get_xticks() if low <= tick <= high]
    assert all(float(tick).is_integer() for tick in ticks) is integer_ticks
