"""scripts/benchmark.py: throughput of a hand-written loop, convnet and the model alone."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from convnet.benchmarks import sweep, throughput
from tests.compose import REPO

pytestmark = pytest.mark.slow

# A tiny run: 8x8 digits, small batches, a few steps, no pictures.
TINY = [
    "data=digits",
    "data.batch_size=32",
    "model=custom_allconv",
    "callbacks=minimal",
    "logger=none",
]


def test_the_script_prints_every_arm_and_the_ratios_last(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(REPO / "scripts" / "benchmark.py"),
        "--repeats=1",
        "--warmup=1",
        "--steps=3",
        *TINY,
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"b/c = \d+\.\d\d", lines[-2]), lines[-2]
    assert re.fullmatch(r"b/a = \d+\.\d\d", lines[-1]), lines[-1]
    for arm in ("(a) plain loop", "(b) convnet", "(c) model only"):
        row = next(line for line in lines if arm in line)
        speeds = re.findall(r"\d+\.?\d*", row.split(arm)[1])
        assert len(speeds) >= 6 and all(float(s) > 0 for s in speeds[:3]), row
    # convnet's run went where runs go: outputs/ of the working directory.
    assert list((tmp_path / "outputs" / "benchmark").glob("*_throughput/convnet-0"))


def test_the_ratios_are_those_of_the_best_repeats(tmp_path: Path) -> None:
    result = throughput(TINY, repeats=2, warmup=1, steps=2, arms=["convnet", "model"],
                        output_dir=tmp_path)  # fmt: skip
    convnet, model = result.results["convnet"], result.results["model"]
    assert len(convnet.images_per_second) == len(model.images_per_second) == 2
    assert result.ratio("convnet", "model") == pytest.approx(
        max(convnet.images_per_second) / max(model.images_per_second)
    )
    assert result.ratio("convnet", "plain") is None  # (a) did not run
    assert result.flops_per_image > 0
    assert result.batch_size == 32 and result.image_size == (32, 32)  # digits upsampled


def test_a_sweep_over_models_has_a_row_per_model_and_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = [override for override in TINY if not override.startswith("model=")]
    table = sweep([16], [32], run, models=["custom_allconv", "small"], repeats=1,
                  warmup=1, steps=2, arms=["convnet", "model"])  # fmt: skip
    columns = {column.header: list(column.cells) for column in table.columns}
    assert columns["model"] == ["custom_allconv", "small"]
    assert columns["batch"] == ["16", "16"]
    # Each row measured its own model: the two networks differ in FLOPs per image.
    assert columns["GFLOP/image"][0] != columns["GFLOP/image"][1]
    assert all(float(ratio) > 0 for ratio in columns["b/c"])
    runs = (tmp_path / "outputs" / "benchmark").glob("*_sweep/*-b16-32")
    assert sorted(run.name for run in runs) == ["custom_allconv-b16-32", "small-b16-32"]
