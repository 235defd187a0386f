"""Training throughput side by side in one process: a hand-written loop, convnet, the model.

The arms are described in convnet.arms.

Each arm trains `warmup` steps, then is timed over `steps` steps (the device is
synchronised at both ends only); arms are interleaved, repeat after repeat, and each is
judged by its fastest repeat (other work on a shared machine only ever slows a run).
On the CPU, all arms run with the host allocator convnet's training sets up
(convnet.host_memory, `keep_host_memory`), as it is one setting for the whole process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from convnet.arms import ARMS, ArmResult, Throughput
from convnet.build import (
    memory_format_of,
    precision_for,
    prepare_host_memory,
    training_device_type,
)
from convnet.config import ConfigError
from convnet.data import ImageDataModule
from convnet.data.describe import complete_data_config
from convnet.data.splits import TensorSplit
from convnet.hardware import auto_precision, cpu_description, memory_format_for
from convnet.step_timing import (
    ImagesDataset,
    LightningStep,
    PeakMemory,
    SameBatch,
    StepWindow,
    TrainStep,
    autocast_dtype,
    timed,
    torchvision_transform,
)
from convnet.train import train

log = logging.getLogger(__name__)

FP32 = "32-true"
LAYERS = "layer_summary"  # the callback that prints the run's layer table


def _short(precision: str, memory_format: torch.memory_format) -> str:
    """Return e.g. `bf16 NHWC`, `fp32 NCHW`: an arm's precision and layout, short."""
    number = {"bf16-mixed": "bf16", "16-mixed": "fp16"}.get(precision, "fp32")
    return f"{number} {'NHWC' if memory_format == torch.channels_last else 'NCHW'}"


class ThroughputBenchmark:
    """Measures the arms for one run config (see the module docstring)."""

    def __init__(
        self,
        cfg: DictConfig,
        compose: Callable[[Sequence[str], Path], DictConfig],
        overrides: Sequence[str],
        output_dir: Path,
        warmup: int = 5,
        steps: int = 20,
        loader_workers: int | None = None,
    ) -> None:
        complete_data_config(cfg)  # an image folder's null keys, as a training run takes them
        self.cfg, self.compose, self.overrides = cfg, compose, list(overrides)
        self.output_dir, self.warmup, self.steps = output_dir, warmup, steps
        device_type = training_device_type(cfg.trainer)
        on_cuda = device_type == "cuda"
        # Process-wide, so set before any arm runs: every arm gets the same allocator.
        self.keeps_host_memory = prepare_host_memory(cfg)
        self.device = torch.device("cuda" if on_cuda else "cpu")
        # The run's precision and layout ((a), (b)) and the device's best ((c), (d)).
        self.precision = precision_for(cfg.trainer)
        autocast_dtype(self.precision)  # one the benchmark runs, checked before any arm
        self.memory_format = memory_format_of(cfg)
        self.best = (auto_precision(device_type), memory_format_for("auto", device_type))
        self._compiled: TrainStep | None = None
        self.data: ImageDataModule = instantiate(cfg.data)
        self.data.setup("fit")
        self.batch_size = int(cfg.data.batch_size)
        batches = len(self.data.splits.train) // self.batch_size
        if warmup + steps > batches:
            raise ConfigError(
                f"--warmup {warmup} + --steps {steps} exceed the {batches} batches of "
                f"{self.batch_size} in one epoch of the training split: use fewer steps or "
                "more data"
            )
        if loader_workers is None:
            # What a careful hand-written loop uses: workers on a GPU machine, none on the
            # CPU, where workers take the cores the training step needs.
            loader_workers = min(8, os.cpu_count() or 1) if on_cuda else 0
        self.loader_workers = loader_workers

    def setting(self, arm: str) -> tuple[str, torch.memory_format]:
        """Return the precision and memory format arm `arm` runs in."""
        if arm in ("plain", "convnet", "lightning"):
            return self.precision, self.memory_format
        if arm == "convnet_fp32":
            return FP32, self.memory_format
        if arm == "model_fp32":
            return FP32, self.best[1]
        return self.best

    def _batch(self) -> tuple[Tensor, Tensor]:
        split = self.data.splits.train
        if isinstance(split, TensorSplit):
            images, labels = split.images[: self.batch_size], split.labels[: self.batch_size]
        else:
            pairs = [split[i] for i in range(self.batch_size)]
            images = torch.stack([image for image, _ in pairs])
            labels = torch.tensor([label for _, label in pairs])
        images = self.data.transform(images.to(self.device), training=False)
        return images, labels.to(self.device)

    def flops_per_image(self) -> float:
        """Return the FLOPs of one training image (forward and backward), counted by torch."""
        step = TrainStep(self.cfg, self.device, FP32, torch.contiguous_format)
        images, labels = self._batch()
        with FlopCounterMode(display=False) as counter:
            step.criterion(step.network(images), labels).backward()
        return counter.get_total_flops() / self.batch_size

    def _model_speed(self, step: TrainStep, warmup: int | None = None) -> float:
        images, labels = self._batch()
        # Already in the network's layout: the ceiling pays no conversion either.
        images = images.contiguous(memory_format=step.memory_format)

        def steps() -> Iterator[int]:
            while True:
                step(images, labels)
                yield 1

        warmup = self.warmup if warmup is None else warmup
        return timed(self.device, steps(), warmup, self.steps, self.batch_size)

    def lightning(self) -> float:
        """Return img/s of arm (l): the model's training step in the run's precision through
        a minimal LightningModule (convnet.step_timing.LightningStep), with Lightning's
        default Trainer."""
        precision, memory_format = self.setting("lightning")
        step = TrainStep(self.cfg, self.device, precision, memory_format)
        images, labels = self._batch()
        batch = (images.contiguous(memory_format=step.memory_format), labels)
        window = StepWindow(self.warmup, self.steps)
        trainer = L.Trainer(
            accelerator=self.device.type,
            devices=1,
            precision=precision,
            max_epochs=1,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[window],
            default_root_dir=self.output_dir / "lightning",
        )
        trainer.fit(
            LightningStep(step), train_dataloaders=SameBatch(batch, self.warmup + self.steps)
        )
        return self.steps * self.batch_size / window.seconds

    def model(self) -> float:
        """Return img/s of arm (c): steps on one batch already on the device, at the
        device's best precision and memory format."""
        return self._model_speed(TrainStep(self.cfg, self.device, *self.best))

    def model_fp32(self) -> float:
        """Return img/s of arm (c32): arm (c) in fp32."""
        return self._model_speed(TrainStep(self.cfg, self.device, *self.setting("model_fp32")))

    def compiled(self) -> float:
        """Return img/s of arm (d): arm (c) with the network torch.compile'd, compiled once
        (in the first repeat's warmup) and reused by later repeats."""
        if self._compiled is not None:
            return self._model_speed(self._compiled)
        self._compiled = TrainStep(self.cfg, self.device, *self.best, compile_options={})
        # Inductor compiles the forward in the first step, the backward in the first
        # backward, and the steps after those still tune (resnet20 on 2 CPU cores: 78 s,
        # 3.8 s, 1.7 s, then a steady 1 s).
        return self._model_speed(self._compiled, warmup=max(self.warmup, 4))

    def plain(self) -> float:
        """Return img/s of arm (a): the hand-written loop over a torchvision DataLoader."""
        step = TrainStep(self.cfg, self.device, self.precision, self.memory_format)
        dataset = ImagesDataset(self.data.splits.train, torchvision_transform(self.data, self.cfg))
        loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.loader_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.loader_workers > 0,
        )

        def steps() -> Iterator[int]:
            while True:
                for images, labels in loader:
                    images = images.to(self.device, non_blocking=True)
                    step(images, labels.to(self.device, non_blocking=True))
                    yield 1

        return timed(self.device, steps(), self.warmup, self.steps, self.batch_size)

    def convnet(self, repeat: int, precision: str | None = None) -> float:
        """Return img/s of arm (b): convnet's training of the run config (arm (b32) with
        `precision` 32-true)."""
        window = StepWindow(self.warmup, self.steps)
        forced = [f"++trainer.precision={precision}"] if precision else []
        name = "convnet" if precision is None else "convnet_fp32"
        cfg = self.compose(
            [
                *self.overrides,
                *forced,
                "test=false",
                "++trainer.max_epochs=1",
                f"++trainer.limit_train_batches={self.warmup + self.steps}",
                "++trainer.limit_val_batches=1",
                "++trainer.num_sanity_val_steps=0",
            ],
            self.output_dir / f"{name}-{repeat}",
        )
        if (repeat > 0 or precision is not None) and (cfg.get("callbacks") or {}).get(LAYERS):
            # The run's layer table opens the first run of (b), not every one of them.
            cfg.callbacks[LAYERS] = None
        train(cfg, callbacks=[window])
        return self.steps * self.batch_size / window.seconds

    def _measure(self, arm: str, repeat: int) -> float | None:
        if arm == "convnet":
            return self.convnet(repeat)
        if arm == "convnet_fp32":
            return self.convnet(repeat, FP32)
        if arm != "compiled":
            return getattr(self, arm)()
        try:
            return self.compiled()
        except Exception as error:  # inductor's failures have no common base class
            log.warning("arm (d) left out: torch.compile failed here: %s", error)
            return None

    def arms_to_run(self, arms: Sequence[str]) -> list[str]:
        """Return `arms` checked, without (c32) where (c) is already fp32 and without (b32)
        where the run is."""
        unknown = [arm for arm in arms if arm not in ARMS]
        if unknown:
            raise ConfigError(f"unknown arms {unknown}: choose from {', '.join(ARMS)}")
        repeated = {
            "model_fp32": self.best[0] == FP32,
            "convnet_fp32": autocast_dtype(self.precision) is None,
        }
        return [arm for arm in arms if not repeated.get(arm, False)]

    def run(self, arms: Sequence[str] = ARMS, repeats: int = 3) -> Throughput:
        """Measure `arms` `repeats` times each, interleaved; return the figures."""
        arms = self.arms_to_run(arms)
        results = {}
        for arm in arms:
            precision, memory_format = self.setting(arm)
            results[arm] = ArmResult(arm, _short(precision, memory_format))
        for repeat in range(repeats):
            for arm in [arm for arm in arms if arm in results]:
                with PeakMemory(self.device) as memory:
                    speed = self._measure(arm, repeat)
                if speed is None:
                    del results[arm]
                    continue
                results[arm].images_per_second.append(speed)
                results[arm].peak_memory_mib = max(results[arm].peak_memory_mib, memory.peak_mib)
                log.info("%s, repeat %d: %.1f img/s", arm, repeat + 1, speed)
        return Throughput(
            results=results,
            flops_per_image=self.flops_per_image(),
            batch_size=self.batch_size,
            image_size=tuple(self.data.image_size),
            device=_device_name(self.device),
            precision=_short(self.precision, self.memory_format),
            memory_kind=PeakMemory.kind(self.device, self.keeps_host_memory),
            loader_workers=self.loader_workers,
            repeats=repeats,
        )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({cpu_description()}), {torch.get_num_threads()} threads"
