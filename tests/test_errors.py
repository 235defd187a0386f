"""A user's mistake ends every entry point on one line; a bug keeps its traceback."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from convnet.errors import one_line_errors, user_error_line
from tests.compose import REPO, compose_config
from tests.scripts import run_script


def test_a_config_object_that_fails_to_build_is_named_with_its_key() -> None:
    vgg = {"_target_": "convnet.models.VGG", "layers": [8, "M"], "in_channels": 3}
    # A VGG takes any image size: the size check that builders run is what refuses it.
    checked = {"_target_": "convnet.models.check_network"}
    node = {"model": {**checked, "network": {**vgg, "num_classes": 10, "image_size": 1}}}
    with pytest.raises(Exception) as raised:
        instantiate(OmegaConf.create(node))
    line = user_error_line(raised.value)
    assert line is not None
    assert line.startswith("ValueError: VGG cannot take image_size=")
    assert line.endswith("(while building `model`)")
    assert "Error in call to target" not in line  # Hydra's wrapper is not shown


def test_omegaconf_errors_show_their_first_line_only() -> None:
    cfg = OmegaConf.create({"data": {"num_classes": "???"}})
    with pytest.raises(Exception) as raised:
        _ = cfg.data.num_classes
    assert user_error_line(raised.value) == (
        "MissingMandatoryValue: Missing mandatory value: data.num_classes"
    )


def test_an_unknown_group_option_is_one_line_listing_the_options(tmp_path: Path) -> None:
    with pytest.raises(Exception) as raised:
        compose_config("train", ["model=nope"], tmp_path)
    line = user_error_line(raised.value)
    assert line is not None
    assert line.startswith(
        "MissingConfigException: In 'train': Could not find 'model/nope'. "
        "Available options in 'model': custom, custom_allconv, resnet101,"
    )
    assert "\n" not in line and "search path" not in line


@pytest.mark.parametrize("bug", [TypeError("bad operand"), KeyError("x"), AttributeError("y")])
def test_a_bug_is_not_a_users_mistake(bug: Exception) -> None:
    assert user_error_line(bug) is None
    with pytest.raises(type(bug)), one_line_errors():
        raise bug


def test_the_traceback_goes_to_the_log_file_and_the_line_to_the_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    log_file = logging.FileHandler(tmp_path / "train.log")
    console = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(log_file)
    root.addHandler(console)
    try:
        with pytest.raises(SystemExit) as raised, one_line_errors():
            raise FileNotFoundError("image folder /x does not exist; set data.source.root")
    finally:
        root.removeHandler(log_file)
        root.removeHandler(console)
        log_file.close()
    assert (
        raised.value.code
        == "FileNotFoundError: image folder /x does not exist; set data.source.root"
    )
    logged = (tmp_path / "train.log").read_text()
    assert "Traceback (most recent call last)" in logged and "test_errors.py" in logged
    assert "Traceback" not in capsys.readouterr().err


def test_hydra_full_error_keeps_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ValueError, match="bad value"), one_line_errors():
        raise ValueError("bad value")


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_script([REPO / "scripts" / script, *args], cwd=cwd, timeout=180)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "args", "line"),
    [
        (
            "eval.py",
            ["ckpt_path=missing.ckpt"],
            "CheckpointError: checkpoint missing.ckpt: no such file",
        ),
        ("summary.py", ["data.image_size=2"], "ValueError: VGG cannot take image_size=[2, 2]"),
        (
            "summary.py",
            ["model=nope"],
            "MissingConfigException: In 'train': Could not find 'model/nope'",
        ),
        ("sweep_summary.py", [], "FileNotFoundError: no sweep under outputs/train/multiruns"),
        (
            "train.py",
            [
                "data=imagefolder",
                "data.source.root=missing",
                "data.num_classes=3",
                "callbacks=none",
            ],
            "FileNotFoundError: image folder missing does not exist",
        ),
    ],
)
def test_entry_points_show_a_users_mistake_as_one_line(
    tmp_path: Path, script: str, args: list[str], line: str
) -> None:
    done = _run(script, *args, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(line), done.stderr
