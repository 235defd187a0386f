"""What the wheel carries and what a core install requires (pyproject.toml)."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import requires
from pathlib import Path

import pytest
from setuptools import find_packages

from convnet.compose import CONFIG_DIR
from tests.compose import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# The sweep stack and the launchers: extras only.
EXTRAS_ONLY = (
    "optuna",
    "hydra-optuna-sweeper",
    "sqlalchemy",
    "alembic",
    "hydra-joblib-launcher",
    "hydra-submitit-launcher",
)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()


def test_every_package_under_src_and_the_configs_are_in_the_wheels_list() -> None:
    # configs/ lies outside src/, so the packages are listed by hand: a new one must be added.
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == {*find_packages(REPO / "src"), "convnet.configs"}


def test_the_checkouts_configs_folder_is_the_config_package() -> None:
    # An editable install maps convnet.configs onto configs/: one copy of every config.
    assert CONFIG_DIR.resolve() == (REPO / "configs").resolve()


def test_the_core_install_requires_nothing_of_the_sweep_stack() -> None:
    core = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not core & set(EXTRAS_ONLY)
    # The installed metadata too: every such requirement is under an extra's marker.
    for requirement in requires("convnet") or []:
        if _name(requirement) in EXTRAS_ONLY:
            assert "extra ==" in requirement, requirement
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {_name(r) for r in extras["sweeps"]} == {
        "hydra-optuna-sweeper",
        "optuna",
        "sqlalchemy",
        "alembic",
    }
    # The tests run sweeps with every launcher.
    (dev_extras,) = [r for r in extras["dev"] if r.startswith("convnet[")]
    assert "all" in dev_extras.removeprefix("convnet[").removesuffix("]").split(",")
    # ImageFont.load_default(size=...), which the pictures' labels use, came in Pillow 10.1.
    assert any(r.startswith("pillow>=10.1") for r in PYPROJECT["project"]["dependencies"])


@pytest.mark.slow
def test_the_wheel_carries_every_config_and_the_convnet_command(tmp_path: Path) -> None:
    build = ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run(
        [sys.executable, "-m", "pip", *build, str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("convnet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {
        f"convnet/configs/{p.relative_to(REPO / 'configs')}" for p in REPO.glob("configs/**/*.yaml")
    }
    assert configs and configs <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "convnet = convnet.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_a_checkout_not_installed_finds_its_configs() -> None:
    # src/ on PYTHONPATH and nothing installed: `-S` skips the .pth files, so the editable
    # install's mapping of configs/ onto convnet.configs is not there either.
    probe = (
        "import convnet.compose as c; from convnet.models.zoo import model_names; "
        "print(c.CONFIG_DIR); print(c.compose_config('train', ['model=resnet20']).model._target_); "
        "print(len(model_names()))"
    )
    path = f"{REPO / 'src'}:{sysconfig.get_paths()['purelib']}"
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        cwd=REPO.parent,
        env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config_dir, target, models = result.stdout.split()
    assert Path(config_dir) == REPO / "configs"
    assert target == "convnet.models.ResNet"
    assert int(models) == len(list((REPO / "configs" / "model").glob("*.yaml")))
