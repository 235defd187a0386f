"""Checks of a sweep before its first job, the Optuna search space, and per-job seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import initialize_config_dir
from omegaconf import DictConfig, open_dict, read_write

from convnet.sweeps.callbacks import SweepCallback
from convnet.sweeps.check import SweepConfigError, check_sweep, grid_jobs
from convnet.sweeps.search_space import optimizer_ranges
from tests.compose import CONFIGS, compose_config

pytestmark = pytest.mark.filterwarnings("ignore:.*SQLAlchemy 2.0")  # optuna 2 on SQLAlchemy 1.4


def _sweep(tmp_path: Path, sweep: list[str], fixed: tuple[str, ...] = ()) -> DictConfig:
    """Return the multirun config of `python scripts/train.py -m <fixed> <sweep>`."""
    cfg = compose_config("train", ["data=digits", *fixed], tmp_path)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.overrides.task = [*cfg.hydra.overrides.task, *sweep]
    return cfg


def _check(cfg: DictConfig) -> int:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        return check_sweep(cfg)


def test_a_grid_expands_to_every_combination_in_launch_order() -> None:
    jobs = grid_jobs(["data=digits", "optimizer.lr=0.1,0.2", "seed=0,1"])
    assert jobs == [
        ["data=digits", "optimizer.lr=0.1", "seed=0"],
        ["data=digits", "optimizer.lr=0.1", "seed=1"],
        ["data=digits", "optimizer.lr=0.2", "seed=0"],
        ["data=digits", "optimizer.lr=0.2", "seed=1"],
    ]


def test_every_job_of_a_valid_grid_is_checked(tmp_path: Path) -> None:
    cfg = _sweep(tmp_path, ["optimizer=sgd,adamw", "module.label_smoothing=0.0,0.1"])
    assert _check(cfg) == 4


@pytest.mark.parametrize(
    ("sweep", "named"),
    [
        (["optimizer.lr=0.1,-1"], "optimizer.lr=-1"),
        (["model.widht=1,2"], "widht"),
        (["model=small,resnet20", "model.width_multiplier=2"], "width_multiplier"),
        # Hydra's own traceback for a group given a number, named as the commands name it.
        (["optimizer=5,sgd"], "optimizer=5: optimizer is a config group"),
        (["model.layers.x=1,2"], "model.layers.x: model.layers is a list"),
    ],
)
def test_a_grid_with_a_job_that_cannot_run_names_it(
    tmp_path: Path, sweep: list[str], named: str
) -> None:
    with pytest.raises(SweepConfigError, match="nothing was launched") as error:
        _check(_sweep(tmp_path, sweep))
    assert named in str(error.value)


def test_a_swept_key_the_config_does_not_have_is_named_once_with_the_key_meant(
    tmp_path: Path,
) -> None:
    with pytest.raises(SweepConfigError) as error:
        _check(_sweep(tmp_path, ["optimizer.lrr=0.1,0.2", "model=small,resnet20"]))
    message = str(error.value)
    assert "4 of 4 checked jobs fail" in message
    # One problem, whatever the value or the model: the key, and the one meant.
    assert message.count("optimizer has no key `lrr`; did you mean optimizer.lr?") == 1
    assert "+optimizer.lrr" not in message  # Hydra's advice, which would not help


def test_a_jobs_problems_are_listed_a_line_each_under_it(tmp_path: Path) -> None:
    with pytest.raises(SweepConfigError) as error:
        _check(_sweep(tmp_path, ["seed=0,1"], ("+optimizer.lrr=0.1", "+optimizer.moment=0.9")))
    lines = str(error.value).splitlines()
    job = next(number for number, line in enumerate(lines) if line.startswith("- job `"))
    assert lines[job + 1 : job + 3] == [
        "    optimizer.lrr: torch.optim.SGD takes no argument `lrr`; did you mean optimizer.lr?",
        "    optimizer.moment: torch.optim.SGD takes no argument `moment`; did you mean "
        "optimizer.momentum?",
    ]
    assert "invalid config:" not in str(error.value)  # the problems, not a command's advice


def test_slurm_needs_a_number_of_gpus_per_node(tmp_path: Path) -> None:
    cfg = _sweep(tmp_path, ["seed=0,1"], ("hydra/launcher=slurm", "trainer=ddp"))
    with pytest.raises(SweepConfigError, match=r"hydra\.launcher\.tasks_per_node=-1"):
        _check(cfg)


def test_a_bad_sweep_stops_the_multirun_before_its_folder_exists(tmp_path: Path) -> None:
    cfg = _sweep(tmp_path, ["optimizer.lr=0.1,-1"])
    with (
        initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)),
        pytest.raises(SystemExit),
    ):
        SweepCallback().on_multirun_start(cfg)
    assert not (tmp_path / "outputs").exists()


def test_the_optuna_search_space_is_checked_by_drawing_trials(tmp_path: Path) -> None:
    cfg = _sweep(tmp_path, [], ("hparams_search=optuna",))
    assert cfg.hydra.sweeper.n_trials == 20 and cfg.hydra.sweeper.direction == "maximize"
    assert _check(cfg) == 4
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.sweeper.params["model.widht_multiplier"] = "interval(0.5, 2.0)"
    with pytest.raises(SweepConfigError, match="widht_multiplier"):
        _check(cfg)


def test_an_optuna_sweeper_whose_parser_changed_stops_the_multirun_naming_the_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hydra_plugins.hydra_optuna_sweeper import _impl

    parse = _impl.create_params_from_overrides
    # hydra-optuna-sweeper 1.4.0rc3 returns (distributions, fixed, fixed overrides).
    monkeypatch.setattr(_impl, "create_params_from_overrides", lambda a: (*parse(a), []))
    cfg = _sweep(tmp_path, [], ("hparams_search=optuna",))
    with (
        initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)),
        pytest.raises(SystemExit),
    ):
        SweepCallback().on_multirun_start(cfg)
    assert "create_params_from_overrides returned a 3-tuple" in caplog.text
    assert "pip install 'hydra-optuna-sweeper>=1.2,<1.4'" in caplog.text
    assert not (tmp_path / "outputs").exists()


def test_each_optimizer_draws_its_rates_from_its_own_range(tmp_path: Path) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution

    cfg = _sweep(tmp_path, [], ("hparams_search=optuna",))
    for name in ("sgd", "adamw"):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        ranges = cfg.optimizer_ranges[name]
        for _ in range(5):
            trial = study.ask({"optimizer": CategoricalDistribution([name])})
            optimizer_ranges(cfg, trial)
            for key in ("lr", "weight_decay"):
                low, high = ranges[key]
                assert low <= trial.params[f"optimizer.{key}"] <= high
            study.tell(trial, 0.0)


@pytest.mark.parametrize("data", ["digits", "shapes"])
def test_a_jobs_seed_changes_training_but_not_the_data_split(tmp_path: Path, data: str) -> None:
    first = compose_config("train", [f"data={data}", "seed=0"], tmp_path)
    second = compose_config("train", [f"data={data}", "seed=1"], tmp_path)
    assert (first.data.seed, second.data.seed) == (0, 1)  # order and augmentation
    assert first.data.source.seed == second.data.source.seed  # the split or the images
