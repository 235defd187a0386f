"""Precision and memory format: what `auto` picks per device, and every forced choice trains."""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from convnet import hardware
from convnet.build import build_model, build_module, build_trainer, precision_for
from convnet.checks import ConfigError
from convnet.hardware import memory_format_for

# One optimizer step on the first batch, nothing else: no validation, pictures or logs.
ONE_STEP = [
    "callbacks=none",
    "logger=none",
    "++trainer.max_steps=1",
    "++trainer.limit_val_batches=0",
    "++trainer.num_sanity_val_steps=0",
    "++trainer.enable_checkpointing=false",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
]


class _FirstLoss(L.Callback):
    def __init__(self) -> None:
        self.loss: torch.Tensor | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.loss = outputs["loss"].detach()


def _one_step(cfg: DictConfig) -> tuple[torch.Tensor, L.Trainer]:
    """Return the loss of the first training step of `cfg` and the trainer that took it."""
    L.seed_everything(cfg.seed, verbose=False)
    module = build_module(cfg, build_model(cfg.model))
    first = _FirstLoss()
    trainer = build_trainer(cfg, [first])
    trainer.fit(module, datamodule=instantiate(cfg.data))
    return first.loss, trainer


# The fp32 loss each forced choice is compared with, computed once per test session.
_FP32 = ("trainer.precision=32-true", "memory_format=contiguous_format")
_reference: dict[str, float] = {}


@pytest.fixture
def one_step(train_config: Callable[..., DictConfig]) -> Callable[..., tuple]:
    return lambda *overrides: _one_step(train_config(*ONE_STEP, *overrides))


@pytest.mark.slow
@pytest.mark.parametrize("memory_format", ["channels_last", "contiguous_format"])
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_each_forced_choice_trains_a_step_with_the_loss_of_fp32(
    one_step: Callable[..., tuple], precision: str, memory_format: str
) -> None:
    if "loss" not in _reference:
        _reference["loss"] = one_step(*_FP32)[0].item()
    loss, trainer = one_step(f"trainer.precision={precision}", f"memory_format={memory_format}")
    assert trainer.precision == precision
    network = trainer.lightning_module.model
    layout = getattr(torch, memory_format)
    convolutions = [m.weight for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and all(w.is_contiguous(memory_format=layout) for w in convolutions)
    assert torch.isfinite(loss)
    # bf16 keeps 8 bits of mantissa: the loss of one batch moves by well under 1%.
    tolerance = 2e-2 if precision == "bf16-mixed" else 1e-4
    assert loss.item() == pytest.approx(_reference["loss"], rel=tolerance)


@pytest.mark.slow
def test_bf16_keeps_weights_optimizer_state_norm_statistics_and_loss_in_fp32(
    one_step: Callable[..., tuple],
) -> None:
    loss, trainer = one_step("trainer.precision=bf16-mixed", "optimizer.momentum=0.9")
    module = trainer.lightning_module
    assert loss.dtype == torch.float32
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.running_mean.dtype == m.running_var.dtype == torch.float32
                         for m in norms)  # fmt: skip
    assert all(m.num_batches_tracked.item() == 1 for m in norms)
    state = trainer.optimizers[0].state.values()
    assert state and {s["momentum_buffer"].dtype for s in state} == {torch.float32}
    assert module.train_sums.loss.dtype == torch.float32


@pytest.mark.slow
def test_the_run_logs_what_it_chose(
    one_step: Callable[..., tuple], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="convnet.module"):
        one_step("trainer.precision=bf16-mixed", "memory_format=channels_last")
    line = f"training on cpu ({hardware.cpu_description()}) in bf16-mixed with channels_last"
    assert line in caplog.text


@pytest.mark.parametrize(
    ("unit", "vectors", "expected", "layout"),
    [
        ("AMX-BF16", "AVX512", "bf16-mixed", torch.channels_last),
        (None, "AVX512", "32-true", torch.channels_last),
        (None, "AVX2", "32-true", torch.channels_last),
        (None, "SVE256", "32-true", torch.contiguous_format),
        (None, "DEFAULT", "32-true", torch.contiguous_format),
    ],
)
def test_auto_precision_on_the_cpu_is_bf16_only_with_bf16_in_hardware_and_nhwc_on_x86(
    monkeypatch: pytest.MonkeyPatch,
    unit: str | None,
    vectors: str,
    expected: str,
    layout: torch.memory_format,
) -> None:
    monkeypatch.setattr(hardware, "cpu_bf16_unit", lambda: unit)
    monkeypatch.setattr(hardware, "cpu_capability", lambda: vectors)
    trainer = OmegaConf.create({"accelerator": "cpu", "precision": "auto"})
    assert precision_for(trainer) == expected
    assert memory_format_for("auto", "cpu") == layout
    # A forced choice wins over what the CPU has.
    assert precision_for(OmegaConf.create({"accelerator": "cpu", "precision": "32-true"})) == (
        "32-true"
    )
    assert memory_format_for("contiguous_format", "cpu") == torch.contiguous_format


def test_this_cpu_is_asked_through_torch() -> None:
    # The project's machines (Sapphire Rapids) have AMX; elsewhere any answer is allowed,
    # but it must agree with oneDNN, which emulates bf16 on CPUs without it.
    unit = hardware.cpu_bf16_unit()
    assert unit in (None, "AMX-BF16", "AVX512_BF16")
    if unit is not None:
        assert torch.ops.mkldnn._is_mkldnn_bf16_supported()


def test_the_cpu_capability_agrees_with_the_kernels_list_of_cpu_flags() -> None:
    # torch runs AVX-512 kernels where the CPU has the four extensions they use, else AVX2
    # ones where it has AVX2 and FMA; Linux lists the flags itself, independently of torch.
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() not in ("x86_64", "AMD64") or not cpuinfo.exists():
        pytest.skip("reads the x86 CPU flags Linux lists")
    if os.environ.get("ATEN_CPU_CAPABILITY"):
        pytest.skip("ATEN_CPU_CAPABILITY forces torch's choice")
    row = next(row for row in cpuinfo.read_text().splitlines() if row.startswith("flags"))
    flags = set(row.split(":", 1)[1].split())
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        expected = "AVX512"
    elif {"avx2", "fma"} <= flags:
        expected = "AVX2"
    else:
        expected = "DEFAULT"
    assert hardware.cpu_capability() == expected
    assert (memory_format_for("auto", "cpu") == torch.channels_last) == (expected != "DEFAULT")
    line = hardware.describe("32-true", torch.channels_last, "cpu")
    assert f"training on cpu ({expected}, bf16 in hardware: " in line


def test_an_unknown_memory_format_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"memory_format='nhwc'.*channels_last"):
        memory_format_for("nhwc", "cpu")
