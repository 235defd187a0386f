"""convnet.compose: configs composed from CONFIG_DIR, or by the Hydra that is running."""

from __future__ import annotations

from pathlib import Path

from hydra import initialize_config_dir
from omegaconf import OmegaConf

from convnet.compose import CONFIG_DIR, compose_config, compose_in_running_hydra


def test_config_dir_holds_each_scripts_config() -> None:
    for name in ("train", "eval", "visualize"):
        assert (CONFIG_DIR / f"{name}.yaml").is_file()


def test_a_config_composed_for_a_run_folder_reads_as_inside_that_run(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    cfg = compose_config("train", ["data=digits"], run)
    assert run.is_dir()
    assert cfg.data.source._target_.endswith("DigitsSource")
    assert cfg.hydra.runtime.output_dir == str(run) and cfg.hydra.runtime.choices.data == "digits"
    # ${hydra:...} interpolations read the run, as inside scripts/train.py.
    paths = OmegaConf.to_container(cfg.paths, resolve=True)
    assert paths["root_dir"] == str(tmp_path) and paths["output_dir"] == str(run)


def test_without_a_run_folder_nothing_is_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = compose_config("train", ["model=small"])
    assert cfg.hydra.runtime.choices.model == "small"
    assert list(tmp_path.iterdir()) == []


def test_a_running_hydra_composes_with_its_own_search_path(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("lr: 0.1\n")
    with initialize_config_dir(version_base="1.3", config_dir=str(tmp_path)):
        cfg = compose_in_running_hydra("job", ["lr=0.2"])
    assert cfg.lr == 0.2 and "hydra" in cfg
