"""A sweep job's TensorBoard run is named by its overrides, in the run list and HParams."""

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import plugin_data_pb2

from convnet.loggers import MAX_NAME, TensorBoardLogger, sweep_run_name
from tests.sweeps.conftest import TINY_DIGITS


def test_a_sweep_job_logs_into_a_folder_named_by_its_overrides(tmp_path: Path) -> None:
    job = TensorBoardLogger(tmp_path, overrides="model=resnet20,seed=1", sweep=True)
    assert Path(job.log_dir) == tmp_path / "tensorboard" / "model=resnet20,seed=1"
    single = TensorBoardLogger(tmp_path, overrides="model=resnet20", sweep=False)
    assert Path(single.log_dir) == tmp_path / "tensorboard"  # a resume appends here
    plain = TensorBoardLogger(tmp_path, overrides="", sweep=True)
    assert Path(plain.log_dir) == tmp_path / "tensorboard"


def test_a_run_name_keeps_to_one_folder_of_a_legal_length() -> None:
    assert sweep_run_name("data.source.root=/data/cats") == "data.source.root=_data_cats"
    long = ",".join(f"model.widths.{i}=64" for i in range(40))
    name = sweep_run_name(long)
    assert len(name) == MAX_NAME and name != sweep_run_name(long + ",seed=1")


@pytest.mark.slow
def test_tensorboard_names_each_sweep_job_by_its_overrides(run_sweep, tmp_path: Path) -> None:
    result = run_sweep(
        *TINY_DIGITS,
        "logger=tensorboard",
        "callbacks=default",  # the hparams callback among them
        "callbacks.rich_progress_bar=null",
        "model=small,resnet20",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    runs = EventMultiplexer().AddRunsFromDirectory(str(sweep))
    runs.Reload()
    names = {Path(run).parts[-1]: run for run in runs.Runs()}
    assert len(names) == 2
    for model in ("small", "resnet20"):
        (name,) = [n for n in names if f"model={model}," in f"{n},"]
        assert "data=digits" in name and "logger=tensorboard" in name
        content = runs.PluginRunToTagToContent("hparams")[names[name]]
        start = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"]
        )
        hparams = start.session_start_info.hparams
        assert hparams["model"].string_value == model
        assert hparams["overrides"].string_value == name
