"""Training throughput side by side in one process: a hand-written loop, convnet, the model.

(a) `plain`: the PyTorch loop a user writes by hand: a torchvision DataLoader with the
    usual per-image transforms (random crop, flip, to float, normalise), the batch copied
    to the device, forward and backward under the same precision, the same optimizer.
(b) `convnet`: convnet's own training, `convnet.train.train` with the run's config, as
    scripts/train.py runs it (Lightning, callbacks, logger, device-resident data).
(c) `model`: forward, backward and optimizer step on one batch already on the device:
    the ceiling any data path can reach.

Each arm trains `warmup` steps, then is timed over `steps` steps (the device is
synchronised at both ends only); arms are interleaved, repeat after repeat, and each is
judged by its fastest repeat (other work on a shared machine only ever slows a run).
On the CPU, all arms run with the host allocator convnet's training sets up
(convnet.host_memory, `keep_host_memory`), as it is one setting for the whole process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2

from convnet.callbacks.memory import host_rss_mib
from convnet.config import ConfigError
from convnet.data import ImageDataModule
from convnet.data.splits import TensorSplit
from convnet.train import (
    build_module,
    build_network,
    precision_for,
    prepare_host_memory,
    train,
    trains_on_cuda,
)

log = logging.getLogger(__name__)

ARMS = ("plain", "convnet", "model")
LETTERS = {"plain": "a", "convnet": "b", "model": "c"}
DESCRIPTIONS = {"plain": "plain loop", "convnet": "convnet", "model": "model only"}


@dataclass
class ArmResult:
    """The timed repeats of one arm."""

    arm: str
    images_per_second: list[float] = field(default_factory=list)
    peak_memory_mib: float = 0.0

    def best(self) -> float:
        """Return the fastest repeat's images per second."""
        return max(self.images_per_second)


@dataclass
class Throughput:
    """What one benchmark measured: the arms, FLOPs per image and the setting."""

    results: dict[str, ArmResult]
    flops_per_image: float
    batch_size: int
    image_size: tuple[int, int]
    device: str
    precision: str
    memory_kind: str
    loader_workers: int
    repeats: int

    def ratio(self, numerator: str, denominator: str) -> float | None:
        """Return best img/s of arm `numerator` over that of `denominator`, if both ran."""
        if numerator not in self.results or denominator not in self.results:
            return None
        return self.results[numerator].best() / self.results[denominator].best()


def autocast_dtype(precision: str) -> torch.dtype | None:
    """Return the autocast dtype of a Lightning precision (None: full precision)."""
    dtypes = {"32-true": None, "32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
    if precision not in dtypes:
        raise ConfigError(
            f"trainer.precision={precision} is not one the benchmark runs: use "
            f"{', '.join(dtypes)} (or auto)"
        )
    return dtypes[precision]


class _Step:
    """One training step of a network as a hand-written loop does it."""

    def __init__(self, cfg: DictConfig, device: torch.device, dtype: torch.dtype | None) -> None:
        L.seed_everything(cfg.seed, verbose=False)
        network = build_network(cfg).to(device)
        if device.type == "cuda":
            network = network.to(memory_format=torch.channels_last)
        # The module only supplies the optimizer (fused as convnet's) and the loss.
        module = build_module(cfg, network)
        self.network = network.train()
        self.optimizer = module.build_optimizer()
        self.criterion = module.criterion
        self.device, self.dtype = device, dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def __call__(self, images: Tensor, labels: Tensor) -> None:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = self.criterion(self.network(images), labels)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)


class _Images(Dataset):
    """The training split one image at a time through torchvision transforms."""

    def __init__(self, split: TensorSplit | Dataset, transform: Callable[[Tensor], Tensor]):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if isinstance(self.split, TensorSplit):
            image, label = self.split.images[index], int(self.split.labels[index])
        else:
            image, label = self.split[index]
        return self.transform(image), label


def torchvision_transform(data: ImageDataModule, cfg: DictConfig) -> v2.Compose:
    """Return the usual per-image training transforms of the data config, in torchvision."""
    steps: list[nn.Module] = []
    size = list(data.image_size)
    steps.append(v2.Resize(size, antialias=True))  # a no-op at the data's own size
    if cfg.data.get("crop_padding", 0):
        steps.append(v2.RandomCrop(size, padding=cfg.data.crop_padding))
    if cfg.data.get("flip", False):
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg.data.mean, cfg.data.std)]
    return v2.Compose(steps)


class _PeakMemory:
    """Peak memory while a block runs: CUDA's allocator peak, or the host's RSS sampled."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mib = device, 0.0
        self._stop = threading.Event()

    @staticmethod
    def kind(device: torch.device, kept: bool = False) -> str:
        if device.type == "cuda":
            return "CUDA allocated"
        if kept:
            # Freed memory stays with the process (convnet.host_memory).
            return (
                "host RSS, which never falls while host memory is kept: it includes what "
                "ran before in this process"
            )
        return "host RSS"

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_mib = max(self.peak_mib, host_rss_mib() or 0.0)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mib = max(self.peak_mib, host_rss_mib() or 0.0)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(
    device: torch.device, steps: Iterator[int], warmup: int, count: int, images: int
) -> float:
    """Run `warmup` then `count` steps of the iterator; return images per second."""
    for _ in range(warmup):
        next(steps)
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(count):
        next(steps)
    _synchronize(device)
    return count * images / (time.perf_counter() - start)


class _StepWindow(L.Callback):
    """Times Lightning's training steps warmup..warmup+steps-1 (data loading included)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.seconds = 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            _synchronize(pl_module.device)
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.warmup + self.steps - 1:
            _synchronize(pl_module.device)
            self.seconds = time.perf_counter() - self._start


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
        self.cfg, self.compose, self.overrides = cfg, compose, list(overrides)
        self.output_dir, self.warmup, self.steps = output_dir, warmup, steps
        on_cuda = trains_on_cuda(cfg.trainer)
        # Process-wide, so set before any arm runs: every arm gets the same allocator.
        self.keeps_host_memory = prepare_host_memory(cfg)
        self.device = torch.device("cuda" if on_cuda else "cpu")
        self.precision = precision_for(cfg.trainer)
        self.dtype = autocast_dtype(self.precision)
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
        step = _Step(self.cfg, self.device, self.dtype)
        images, labels = self._batch()
        with FlopCounterMode(display=False) as counter:
            step.criterion(step.network(images), labels).backward()
        return counter.get_total_flops() / self.batch_size

    def model(self) -> float:
        """Return img/s of arm (c): steps on one batch already on the device."""
        step, (images, labels) = _Step(self.cfg, self.device, self.dtype), self._batch()

        def steps() -> Iterator[int]:
            while True:
                step(images, labels)
                yield 1

        return _timed(self.device, steps(), self.warmup, self.steps, self.batch_size)

    def plain(self) -> float:
        """Return img/s of arm (a): the hand-written loop over a torchvision DataLoader."""
        step = _Step(self.cfg, self.device, self.dtype)
        dataset = _Images(self.data.splits.train, torchvision_transform(self.data, self.cfg))
        loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.loader_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.loader_workers > 0,
        )
        channels_last = self.device.type == "cuda"

        def steps() -> Iterator[int]:
            while True:
                for images, labels in loader:
                    images = images.to(self.device, non_blocking=True)
                    if channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    step(images, labels.to(self.device, non_blocking=True))
                    yield 1

        return _timed(self.device, steps(), self.warmup, self.steps, self.batch_size)

    def convnet(self, repeat: int) -> float:
        """Return img/s of arm (b): convnet's training of the run config."""
        window = _StepWindow(self.warmup, self.steps)
        cfg = self.compose(
            [
                *self.overrides,
                "test=false",
                "++trainer.max_epochs=1",
                f"++trainer.limit_train_batches={self.warmup + self.steps}",
                "++trainer.limit_val_batches=1",
                "++trainer.num_sanity_val_steps=0",
            ],
            self.output_dir / f"convnet-{repeat}",
        )
        train(cfg, callbacks=[window])
        return self.steps * self.batch_size / window.seconds

    def run(self, arms: Sequence[str] = ARMS, repeats: int = 3) -> Throughput:
        """Measure `arms` `repeats` times each, interleaved; return the figures."""
        unknown = [arm for arm in arms if arm not in ARMS]
        if unknown:
            raise ConfigError(f"unknown arms {unknown}: choose from {', '.join(ARMS)}")
        results = {arm: ArmResult(arm) for arm in arms}
        for repeat in range(repeats):
            for arm in arms:
                with _PeakMemory(self.device) as memory:
                    speed = self.convnet(repeat) if arm == "convnet" else getattr(self, arm)()
                results[arm].images_per_second.append(speed)
                results[arm].peak_memory_mib = max(results[arm].peak_memory_mib, memory.peak_mib)
                log.info("%s, repeat %d: %.1f img/s", arm, repeat + 1, speed)
        return Throughput(
            results=results,
            flops_per_image=self.flops_per_image(),
            batch_size=self.batch_size,
            image_size=tuple(self.data.image_size),
            device=_device_name(self.device),
            precision=self.precision,
            memory_kind=_PeakMemory.kind(self.device, self.keeps_host_memory),
            loader_workers=self.loader_workers,
            repeats=repeats,
        )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"
