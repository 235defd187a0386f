"""The loggers beyond TensorBoard: CSV and MLflow, alone or beside TensorBoard, read back by
their own readers (csv, MlflowClient, TensorBoard's EventAccumulator)."""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from convnet.build import build_trainer
from convnet.checks import ConfigError
from convnet.errors import user_error_line
from convnet.loggers import RUN_ID_FILE, MLFlowLogger
from convnet.train import train
from tests.callbacks.conftest import logged_images, read_events

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

# Two epochs of two batches on a few images, no pictures but those a test asks for.
QUICK = [
    "debug=fast",
    "test=false",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "data.source.num_train=64",
    "data.source.num_val=32",
    "data.source.num_test=32",
    "data.batch_size=16",
    "data.eval_batch_size=32",
    "callbacks=minimal",
    "callbacks.rich_progress_bar=null",
]
# The cheapest picture: the filters of every stage, at the start and after every epoch.
FILTERS = ["+callbacks.filters._target_=convnet.callbacks.FilterImages"]
# The hyperparameters callback with the learning rate alone.
HPARAMS = [
    "+callbacks.hparams._target_=convnet.callbacks.HParams",
    "+callbacks.hparams.hparams={lr:${optimizer.lr}}",
]


def metric_rows(run: Path) -> list[dict[str, str]]:
    with (run / "csv" / "metrics.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def val_acc_epochs(rows: list[dict[str, str]]) -> list[int]:
    return [int(float(row["epoch"])) for row in rows if row.get("val/acc")]


def mlflow_run(cfg):
    """Return the MLflow run of the run `cfg` and the client that read it from the store."""
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    run_id = (Path(cfg.paths.output_dir) / RUN_ID_FILE).read_text().strip()
    return client, client.get_run(run_id)


def artifact_files(client: MlflowClient, run_id: str, path: str = "") -> list[str]:
    """Return every artifact file of the run under `path`, by MLflow's own listing."""
    found = []
    for entry in client.list_artifacts(run_id, path or None):
        found += artifact_files(client, run_id, entry.path) if entry.is_dir else [entry.path]
    return found


def test_the_logger_group_takes_a_list_of_loggers(train_config) -> None:
    cfg = train_config("logger=[tensorboard,mlflow,csv]")
    assert set(cfg.logger) == {"tensorboard", "mlflow", "csv"}
    assert cfg.logger.mlflow.tracking_uri == f"file:{cfg.paths.log_dir}/mlruns"
    assert set(train_config("logger=csv").logger) == {"csv"}


def test_the_csv_logger_alone_writes_val_acc_for_every_epoch(train_config) -> None:
    cfg = train_config("logger=csv", *QUICK)
    train(cfg)
    rows = metric_rows(Path(cfg.paths.output_dir))
    assert val_acc_epochs(rows) == [0, 1]
    assert all(0 <= float(row["val/acc"]) <= 1 for row in rows if row["val/acc"])
    assert any(row["train/loss"] for row in rows)


def test_mlflow_alone_holds_the_metrics_params_and_pictures_of_the_run(train_config) -> None:
    cfg = train_config("logger=mlflow", "optimizer.lr=0.07", *QUICK, *FILTERS, *HPARAMS)
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    client, run = mlflow_run(cfg)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == run_dir.name
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")] == [1, 3]
    assert run.data.params["lr"] == "0.07"
    files = artifact_files(client, run.info.run_id, "pictures")
    first = [f for f in files if f.startswith("pictures/stage1/filters/step_")]
    # At the start, after epoch 1 (step 2) and after epoch 2 (step 4), each with its text.
    assert sorted(first) == [
        f"pictures/stage1/filters/step_00000{step}.{kind}"
        for step in (0, 2, 4)
        for kind in ("png", "txt")
    ]
    text = Path(client.download_artifacts(run.info.run_id, first[1], str(run_dir)))
    assert "filter" in text.read_text().lower()


def test_tensorboard_and_mlflow_get_the_same_pictures(train_config) -> None:
    cfg = train_config("logger=[tensorboard,mlflow]", *QUICK, "trainer.max_epochs=1", *FILTERS)
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    images = logged_images(read_events(run_dir / "tensorboard"))
    assert "stage1/filters" in images
    client, run = mlflow_run(cfg)
    pictures = [f for f in artifact_files(client, run.info.run_id) if f.endswith(".png")]
    assert len(pictures) == sum(len(events) for events in images.values())
    for tag, events in images.items():
        for event in events:
            path = f"pictures/{tag}/step_{event.step:06d}.png"
            png = Path(client.download_artifacts(run.info.run_id, path, str(run_dir)))
            assert png.read_bytes() == event.encoded_image_string


def test_a_resumed_run_logs_on_into_its_csv_table_and_its_mlflow_run(train_config) -> None:
    first = train_config("logger=[csv,mlflow]", *QUICK, "trainer.max_epochs=1")
    train(first)
    run_dir = Path(first.paths.output_dir)
    before = metric_rows(run_dir)
    run_id = (run_dir / RUN_ID_FILE).read_text()
    resumed = train_config("logger=[csv,mlflow]", *QUICK, "ckpt_path=last")
    train(resumed)
    after = metric_rows(run_dir)
    # Every earlier row is kept as it was; the resumed epoch's rows come after them.
    assert after[: len(before)] == [{key: row.get(key, "") for key in after[0]} for row in before]
    assert val_acc_epochs(after) == [0, 1]
    assert (run_dir / RUN_ID_FILE).read_text() == run_id
    client, run = mlflow_run(resumed)
    (only,) = client.search_runs([run.info.experiment_id])
    assert only.info.run_id == run.info.run_id and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")] == [1, 3]


def test_mlflow_runs_of_a_sweep_share_its_experiment_and_are_named_by_their_overrides(
    tmp_path: Path,
) -> None:
    store = f"file:{tmp_path / 'mlruns'}"
    sweep = tmp_path / "train" / "multiruns" / "2026-01-01_00-00-00"
    runs = []
    for job, overrides in enumerate(["model=small,optimizer.lr=0.1", "model=resnet20"]):
        logger = MLFlowLogger(
            sweep / str(job), store, runs_root=tmp_path, overrides=overrides, sweep=True
        )
        runs.append(logger.experiment.get_run(logger.run_id))
    single_run = tmp_path / "train" / "runs" / "2026-01-02_00-00-00"
    single = MLFlowLogger(single_run, store, runs_root=tmp_path, overrides="seed=1", sweep=False)
    runs.append(single.experiment.get_run(single.run_id))
    client = MlflowClient(store)
    names = [client.get_experiment(run.info.experiment_id).name for run in runs]
    assert names == ["train/multiruns/2026-01-01_00-00-00"] * 2 + ["train/runs"]
    assert [run.info.run_name for run in runs] == [
        "model=small,optimizer.lr=0.1",
        "model=resnet20",
        "2026-01-02_00-00-00",
    ]


def test_a_sweep_job_that_finds_its_experiment_made_meanwhile_joins_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, sweep = f"file:{tmp_path / 'mlruns'}", tmp_path / "multiruns" / "2026-01-01_00-00-00"
    first = MLFlowLogger(sweep / "0", store, runs_root=tmp_path, overrides="seed=0", sweep=True)
    made = first.experiment_id
    lookup, looked = MlflowClient.get_experiment_by_name, []

    def too_early(client, name):  # the second job looks before the first has made it
        looked.append(name)
        return None if len(looked) == 1 else lookup(client, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", too_early)
    second = MLFlowLogger(sweep / "1", store, runs_root=tmp_path, overrides="seed=1", sweep=True)
    assert second.experiment_id == made and len(looked) >= 2
    assert second.experiment.get_run(second.run_id).info.run_name == "seed=1"


def test_a_continued_mlflow_run_keeps_its_params_and_takes_new_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, run_dir = f"file:{tmp_path / 'mlruns'}", tmp_path / "runs" / "a"
    first = MLFlowLogger(run_dir, store)
    first.log_hyperparams({"lr": 0.1, "epochs": 2})
    first.finalize("success")
    resumed = MLFlowLogger(run_dir, store)
    with caplog.at_level(logging.WARNING, logger="convnet.loggers"):
        resumed.log_hyperparams({"lr": 0.1, "epochs": 4, "seed": 1})  # MLflow would refuse
    assert resumed.run_id == first.run_id
    params = MlflowClient(store).get_run(first.run_id).data.params
    assert params == {"lr": "0.1", "epochs": "2", "seed": "1"}
    assert "epochs keep their earlier values (epochs=2)" in caplog.text
    assert MlflowClient(store).get_run(first.run_id).info.status == "RUNNING"


def test_a_run_id_file_that_names_no_run_starts_a_new_mlflow_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = f"file:{tmp_path / 'mlruns'}"
    # An id of the right form that the store does not hold, and a file holding something else.
    for name, text in [("gone", "0123456789abcdef0123456789abcdef"), ("odd", "../../etc")]:
        run_dir = tmp_path / "runs" / name
        run_dir.mkdir(parents=True)
        (run_dir / RUN_ID_FILE).write_text(text)
        with caplog.at_level(logging.WARNING, logger="convnet.loggers"):
            logger = MLFlowLogger(run_dir, store)
            new = logger.run_id
        assert new != text and (run_dir / RUN_ID_FILE).read_text().strip() == new
        assert "logs into a new" in caplog.text


def test_mlflow_without_its_package_is_one_line_naming_the_extra(
    train_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = train_config("logger=[tensorboard,mlflow]", *QUICK)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` fails as if absent
    with pytest.raises(Exception) as raised:
        build_trainer(cfg)
    line = user_error_line(raised.value)
    assert line is not None and "\n" not in line
    assert line.startswith("ConfigError: logger=mlflow needs the package mlflow")
    assert "pip install 'convnet[mlflow]'" in line
    assert isinstance(raised.value.__cause__, ConfigError)


@pytest.mark.slow
@pytest.mark.parametrize("logger", ["csv", "mlflow"])
def test_every_default_callback_runs_without_tensorboard(train_config, logger: str) -> None:
    cfg = train_config(f"logger={logger}", "debug=fast", "test=false")
    assert "histograms" in cfg.callbacks and "embeddings" in cfg.callbacks
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert not (run_dir / "tensorboard").exists()
    if logger == "mlflow":
        client, run = mlflow_run(cfg)
        tags = {f.split("/step_")[0] for f in artifact_files(client, run.info.run_id, "pictures")}
        assert {"pictures/mistakes/confusion_matrix", "pictures/stage1/filters"} <= tags
        assert OmegaConf.select(cfg, "callbacks.hparams.hparams.lr") is not None
        assert run.data.params["lr"] == str(cfg.optimizer.lr)


def _table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_a_resumed_csv_table_moves_the_rows_logged_after_its_checkpoint_aside(
    tmp_path: Path,
) -> None:
    from convnet.loggers import PURGED_FILE, CSVLogger

    # A killed run logged steps 10..40; its last checkpoint is at step 25.
    first = CSVLogger(tmp_path)
    for step in (10, 20, 24, 30, 40):
        first.log_metrics({"train/loss": step / 100}, step=step)
    first.log_metrics({"val/acc": 0.5}, step=24)  # the checkpoint's epoch, one step before
    first.save()
    table = tmp_path / "csv" / "metrics.csv"
    before = _table(table)
    resumed = CSVLogger(tmp_path, purge_step=25)
    resumed.log_metrics({"train/loss": 0.3}, step=30)
    resumed.save()
    after = _table(table)
    # Each step once: the earlier rows up to the checkpoint as they were, then the resumed.
    assert [row["step"] for row in after] == ["10", "20", "24", "24", "30"]
    assert after[:4] == [row for row in before if int(row["step"]) < 25]
    assert after[4]["train/loss"] == "0.3"
    # Nothing is lost: the rows logged again are kept beside the table.
    moved = _table(tmp_path / "csv" / PURGED_FILE)
    assert moved == [row for row in before if int(row["step"]) >= 25]
    # A CSV logger with no purge step (a fresh run's, or a test's) moves nothing.
    assert CSVLogger(tmp_path).experiment.metrics_keys == ["step", "train/loss", "val/acc"]
    assert _table(table) == after
