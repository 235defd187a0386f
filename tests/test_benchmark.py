"""scripts/benchmark.py: throughput of a hand-written loop, convnet and the model alone."""

import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from convnet import hardware
from convnet.benchmarks import compose_run, ratio_lines, sweep, throughput
from convnet.hardware import memory_format_for
from convnet.throughput import ThroughputBenchmark
from tests.compose import REPO
from tests.scripts import run_script

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
        REPO / "scripts" / "benchmark.py",
        "--repeats=2",
        "--warmup=1",
        "--steps=3",
        "--arms=a,b,c,c32",  # (d) compiles for a minute: its own test below
        *TINY,
        "+callbacks.layer_summary._target_=convnet.callbacks.model_summary.LayerSummary",
    ]
    # Printed into a pipe, where rich's console is 80 columns wide: no figure is cut.
    result = run_script(command, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "…" not in result.stdout
    assert result.stdout.count("FLOPs = 2 x MACs") == 1  # the layer table of the first run
    lines = result.stdout.strip().splitlines()
    names = ["b/c", "b/c32", "b/a"] if hardware.cpu_bf16_unit() else ["b/c", "b/a"]
    ratios = lines[-len(names) :]
    for name, line in zip(names, ratios, strict=True):
        assert re.fullmatch(rf"{name} = \d+\.\d\d", line), ratios
    for arm in ("(a) plain loop", "(b) convnet", "(c) model only"):
        row = next(line for line in lines if arm in line)
        setting, *figures = [cell.strip() for cell in row.split(arm)[1].split("│")[1:-1]]
        assert re.fullmatch(r"(fp32|bf16) (NHWC|NCHW)", setting), row
        speeds = re.findall(r"\d+\.?\d*", " ".join(figures))
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


def test_the_fp32_arm_is_convnets_run_forced_to_32_true_beside_the_runs_own(
    tmp_path: Path,
) -> None:
    run = [*TINY, "trainer.precision=bf16-mixed"]
    result = throughput(run, repeats=1, warmup=1, steps=2, arms=["convnet", "convnet_fp32"],
                        output_dir=tmp_path)  # fmt: skip
    assert result.results["convnet"].setting.startswith("bf16")
    assert result.results["convnet_fp32"].setting.startswith("fp32")
    trained = {arm: OmegaConf.load(tmp_path / f"{arm}-0" / "config.yaml").trainer.precision
               for arm in ("convnet", "convnet_fp32")}  # fmt: skip
    assert trained == {"convnet": "bf16-mixed", "convnet_fp32": "32-true"}
    ratio = result.ratio("convnet", "convnet_fp32")
    assert ratio_lines(result) == [f"b/b32 = {ratio:.2f}"]
    # A run in fp32 already would only repeat (b).
    fp32 = [*TINY, "trainer.precision=32-true"]
    benchmark = ThroughputBenchmark(compose_run(fp32, tmp_path), compose_run, fp32, tmp_path, 1, 2)
    assert benchmark.arms_to_run(["convnet", "convnet_fp32", "model"]) == ["convnet", "model"]


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


def test_the_ceiling_runs_in_the_best_precision_and_fp32_runs_are_also_held_to_fp32s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = [*TINY, "trainer.precision=32-true", "trainer.accelerator=cpu"]
    benchmark = ThroughputBenchmark(compose_run(run, tmp_path), compose_run, run, tmp_path, 1, 2)
    layout = memory_format_for("auto", "cpu")  # the run's own: its memory_format is auto
    assert benchmark.setting("convnet") == benchmark.setting("plain") == ("32-true", layout)
    monkeypatch.setattr(hardware, "cpu_bf16_unit", lambda: "AMX-BF16")
    with_bf16 = ThroughputBenchmark(compose_run(run, tmp_path), compose_run, run, tmp_path, 1, 2)
    assert with_bf16.setting("model") == ("bf16-mixed", torch.channels_last)
    assert with_bf16.setting("compiled") == with_bf16.setting("model")
    assert with_bf16.setting("model_fp32") == ("32-true", torch.channels_last)
    assert "model_fp32" in with_bf16.arms_to_run(["convnet", "model", "model_fp32"])
    # Where fp32 is the best the CPU does, (c) is fp32 already and (c32) would repeat it.
    monkeypatch.setattr(hardware, "cpu_bf16_unit", lambda: None)
    monkeypatch.setattr(hardware, "cpu_capability", lambda: "DEFAULT")
    fp32_only = ThroughputBenchmark(compose_run(run, tmp_path), compose_run, run, tmp_path, 1, 2)
    assert fp32_only.setting("model") == ("32-true", torch.contiguous_format)
    assert fp32_only.arms_to_run(["convnet", "model", "model_fp32"]) == ["convnet", "model"]


def test_the_compiled_arm_trains_the_same_network_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dynamo captures the same graphs and AOT autograd splits them into forward and backward
    # as for inductor; only inductor's C++ code generation (torch's, 25 s on a fresh machine
    # for this network) is left out.
    compiled_with: list[dict] = []
    compile_module = torch.nn.Module.compile

    def compile_without_codegen(module: torch.nn.Module, **options) -> None:
        compiled_with.append(options)
        compile_module(module, **options, backend="aot_eager")

    monkeypatch.setattr(torch.nn.Module, "compile", compile_without_codegen)
    result = throughput(TINY, repeats=2, warmup=1, steps=2, arms=["model", "compiled"],
                        output_dir=tmp_path)  # fmt: skip
    compiled, model = result.results["compiled"], result.results["model"]
    assert compiled.setting == model.setting
    assert len(compiled.images_per_second) == 2 and min(compiled.images_per_second) > 0
    assert result.ratio("compiled", "model") == pytest.approx(compiled.best() / model.best())
    assert compiled_with == [{}]  # one network compiled, with inductor's defaults


def test_the_lightning_arm_trains_the_ceilings_step_through_lightning(tmp_path: Path) -> None:
    import lightning as L

    from convnet.step_timing import LightningStep, SameBatch, TrainStep

    run = [*TINY, "trainer.precision=32-true", "trainer.accelerator=cpu"]
    benchmark = ThroughputBenchmark(compose_run(run, tmp_path), compose_run, run, tmp_path, 1, 2)
    images, labels = benchmark._batch()
    cpu = torch.device("cpu")
    # The reference: three hand-written steps of (c) in fp32 from the same seeded network.
    by_hand = TrainStep(benchmark.cfg, cpu, "32-true", torch.contiguous_format)
    for _ in range(3):
        by_hand(images, labels)
    step = TrainStep(benchmark.cfg, cpu, "32-true", torch.contiguous_format)
    start = [p.detach().clone() for p in step.network.parameters()]
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(LightningStep(step), train_dataloaders=SameBatch((images, labels), 3))
    assert trainer.global_step == 3
    trained = list(step.network.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(start, trained, strict=True))
    for ours, reference in zip(trained, by_hand.network.parameters(), strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    # In the benchmark, beside (b) and (c), with its two ratios.
    result = throughput(TINY, repeats=1, warmup=1, steps=2, arms=["convnet", "lightning", "model"],
                        output_dir=tmp_path / "arms")  # fmt: skip
    assert result.results["lightning"].setting == result.results["convnet"].setting
    assert [line.split(" = ")[0] for line in ratio_lines(result)][-2:] == ["b/l", "l/c"]
