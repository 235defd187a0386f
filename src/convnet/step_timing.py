"""The pieces the throughput benchmark times: a hand-written training step, its data, clocks.

convnet.throughput puts them together into the arms it compares side by side.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from convnet.build import build_module, build_network
from convnet.callbacks.memory import host_rss_mib
from convnet.config import ConfigError
from convnet.data import ImageDataModule
from convnet.data.splits import TensorSplit

# Autocast's dtype of each Lightning precision the benchmark runs; None: full precision.
AUTOCAST_DTYPES = {
    "32-true": None,
    "32": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """Return the autocast dtype of a Lightning precision (None: full precision)."""
    if precision not in AUTOCAST_DTYPES:
        raise ConfigError(
            f"trainer.precision={precision} is not one the benchmark runs: use "
            f"{', '.join(AUTOCAST_DTYPES)} (or auto)"
        )
    return AUTOCAST_DTYPES[precision]


class TrainStep:
    """One training step of the run's network as a hand-written loop does it, in a given
    precision and memory format, optionally with the network torch.compile'd."""

    def __init__(
        self,
        cfg: DictConfig,
        device: torch.device,
        precision: str,
        memory_format: torch.memory_format,
        compile_options: dict[str, Any] | None = None,
    ) -> None:
        L.seed_everything(cfg.seed, verbose=False)
        network = build_network(cfg).to(device).to(memory_format=memory_format)
        if compile_options is not None:
            network.compile(**compile_options)
        # The module only supplies the optimizer (fused as convnet's) and the loss.
        module = build_module(cfg, network)
        self.network = network.train()
        self.optimizer = module.build_optimizer()
        self.criterion = module.criterion
        self.device, self.dtype, self.memory_format = (
            device,
            autocast_dtype(precision),
            memory_format,
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def __call__(self, images: Tensor, labels: Tensor) -> None:
        images = images.contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = self.criterion(self.network(images), labels)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)


class LightningStep(L.LightningModule):
    """A TrainStep's network, loss and optimizer in the least LightningModule there is:
    training_step returns the loss and Lightning does the rest, with its defaults. Timed
    over one batch already on the device, it is what Lightning's own loop costs a step."""

    def __init__(self, step: TrainStep) -> None:
        super().__init__()
        self.network, self.criterion = step.network, step.criterion
        self._optimizer = step.optimizer

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        return self.criterion(self.network(images), labels)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self._optimizer


class SameBatch:
    """One batch handed out `count` times: a data loader that costs nothing."""

    def __init__(self, batch: tuple[Tensor, Tensor], count: int) -> None:
        self.batch, self.count = batch, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return iter([self.batch] * self.count)


class ImagesDataset(Dataset):
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


class PeakMemory:
    """Peak memory while a block runs: CUDA's allocator peak, or the host's RSS sampled."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mib = device, 0.0
        self._stop = threading.Event()

    @staticmethod
    def kind(device: torch.device, kept: bool = False) -> str:
        """Return what the peak measures on this device, in words."""
        if device.type == "cuda":
            return "CUDA allocated"
        if kept:
            # Freed memory stays with the process (convnet.host_memory).
            return (
                "host RSS, which never falls while host memory is kept: it includes what "
                "ran before in this process"
            )
        return "host RSS"

    def __enter__(self) -> PeakMemory:
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


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    device: torch.device, steps: Iterator[int], warmup: int, count: int, images: int
) -> float:
    """Run `warmup` then `count` steps of the iterator; return images per second."""
    for _ in range(warmup):
        next(steps)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(count):
        next(steps)
    synchronize(device)
    return count * images / (time.perf_counter() - start)


class StepWindow(L.Callback):
    """Times Lightning's training steps warmup..warmup+steps-1 (data loading included)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.seconds = 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            synchronize(pl_module.device)
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.warmup + self.steps - 1:
            synchronize(pl_module.device)
            self.seconds = time.perf_counter() - self._start
