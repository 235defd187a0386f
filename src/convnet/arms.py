"""The arms the throughput benchmark (convnet.throughput) compares, and what it measured.

(a) `plain`: the PyTorch loop a user writes by hand: a torchvision DataLoader with the
    usual per-image transforms (random crop, flip, to float, normalise), the batch copied
    to the device, forward and backward in the run's precision and memory format, the same
    optimizer.
(b) `convnet`: convnet's own training, `convnet.train.train` with the run's config, as
    scripts/train.py runs it (Lightning, callbacks, logger, device-resident data).
(b32) `convnet_fp32`: (b) forced to `trainer.precision=32-true` (where the run is not fp32
    already): what the default precision gains over fp32, measured in the same process.
(l) `lightning`: the network, loss and optimizer of (c) in a minimal LightningModule, in the
    run's precision and memory format, trained by Lightning with its defaults over one batch
    already on the device (no data path, callbacks or logger): b/l is what convnet costs a
    step beyond Lightning, l/c what Lightning's loop costs beyond the model (where the run
    is in the device's best precision, as `auto` is).
(c) `model`: forward, backward and optimizer step on one batch already on the device, in
    the fastest precision and memory format the device has (what `auto` picks there,
    convnet.hardware): the ceiling any data path can reach, whatever the run's precision.
(c32) `model_fp32`: the same in fp32 (where (c) is not fp32 already), the ceiling of a run
    forced to `trainer.precision=32-true`.
(d) `compiled`: (c) with the network torch.compile'd (inductor), what a user might pick
    instead; left out with a warning where it does not compile.

Plain data and names, without torch: the command line checks `--arms` before importing it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

ARMS = ("plain", "convnet", "convnet_fp32", "lightning", "model", "model_fp32", "compiled")
LETTERS = {
    "plain": "a",
    "convnet": "b",
    "convnet_fp32": "b32",
    "lightning": "l",
    "model": "c",
    "model_fp32": "c32",
    "compiled": "d",
}
DESCRIPTIONS = {
    "plain": "plain loop",
    "convnet": "convnet",
    "convnet_fp32": "convnet, 32-true",
    "lightning": "Lightning alone",
    "model": "model only",
    "model_fp32": "model only",
    "compiled": "model compiled",
}


@dataclass
class ArmResult:
    """The timed repeats of one arm, and the precision and memory format it ran in."""

    arm: str
    setting: str = ""
    images_per_second: list[float] = field(default_factory=list)
    peak_memory_mib: float = 0.0

    def best(self) -> float:
        """Return the fastest repeat's images per second."""
        return max(self.images_per_second)

    def median(self) -> float:
        """Return the median repeat's images per second."""
        return statistics.median(self.images_per_second)


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

    def ratio(self, numerator: str, denominator: str, median: bool = False) -> float | None:
        """Return best img/s of arm `numerator` over that of `denominator` (with `median`,
        of their median repeats), if both ran."""
        if numerator not in self.results or denominator not in self.results:
            return None
        top, bottom = self.results[numerator], self.results[denominator]
        if median:
            return top.median() / bottom.median()
        return top.best() / bottom.best()
