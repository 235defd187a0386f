"""Filter health per stage: dead channels on the fixed validation images and the spread of
the stage's filter norms, as scalars over training (which no other tool logs).

A channel is dead when its stage output is zero (or below) at every position of every
fixed validation image: a ReLU that never fires there passes no gradient and learns
nothing. The spread of filter norms is the coefficient of variation (std / mean) of the L2
norms of the filters of the stage's first conv: near 0 all filters are alike in size; a
rising spread means some filters grow while others shrink towards zero (weight decay
winning over a filter no gradient reaches).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import lightning as L
import torch
from torch import Tensor, nn

from convnet.callbacks.base import PictureContext
from convnet.callbacks.layers import Stage, named_modules, network_of
from convnet.callbacks.state import left_as_found, run_precision
from convnet.checks import positive_int
from convnet.models.trace import capture_outputs

log = logging.getLogger(__name__)

DEAD = "dead_channels"
SPREAD = "filter_norm_spread"


@dataclass(frozen=True)
class StageHealth:
    """One stage's health: `dead` the share of its output channels never above zero on the
    fixed validation images, `norm_spread` std / mean of its first conv's filter norms."""

    stage: Stage
    channels: int
    dead: float
    norm_spread: float


def health_tag(stage: str, measure: str) -> str:
    """Return the scalar tag of a stage's measure: `health/<stage>/<measure>`."""
    return f"health/{stage}/{measure}"


def filter_norm_spread(conv: nn.Module) -> float:
    """Return std / mean of the L2 norms of the filters (output channels) of `conv`."""
    norms = conv.weight.detach().float().flatten(1).norm(dim=1)
    return float(norms.std(unbiased=False) / norms.mean().clamp_min(1e-12))


def dead_share(outputs: Tensor) -> float:
    """Return the share of channels of `outputs` (N, C, h, w) that are never above zero."""
    peaks = outputs.detach().float().amax(dim=(0, 2, 3))
    return float((peaks <= 0).float().mean())


def stage_health(context: PictureContext, inputs: Tensor) -> list[StageHealth]:
    """Return every stage's StageHealth for the normalised images `inputs`."""
    found = context.stages()
    network = context.network
    outputs_of = named_modules(network, [s.output for s in found], "stages")
    convs = named_modules(network, [s.first_conv for s in found], "stages")
    with torch.no_grad():
        outputs = capture_outputs(network, outputs_of, inputs, stop_early=True)
    return [
        StageHealth(
            stage,
            outputs[stage.output].shape[1],
            dead_share(outputs[stage.output]),
            filter_norm_spread(convs[stage.first_conv]),
        )
        for stage in found
    ]


def health_metrics(healths: list[StageHealth]) -> dict[str, float]:
    """Return the scalars of `healths` by tag (see health_tag)."""
    metrics = {}
    for health in healths:
        metrics[health_tag(health.stage.name, DEAD)] = health.dead
        metrics[health_tag(health.stage.name, SPREAD)] = health.norm_spread
    return metrics


class FilterHealth(L.Callback):
    """Log each stage's `health/<stage>/dead_channels` and `health/<stage>/filter_norm_spread`
    at the start of training and at the end of every epoch, for all loggers.

    per_class, seed: the fixed validation images a channel must fire on (per class, chosen
        by seed); more images make "dead" a stronger claim, at one forward pass each time.
    """

    def __init__(
        self, per_class: int = 10, seed: int = 0, network_attribute: str = "model"
    ) -> None:
        self.per_class = positive_int(per_class, "callbacks.filter_health.per_class")
        self.seed = seed
        self.network_attribute = network_attribute
        self.seconds = 0.0  # time spent, for benchmarks
        self.latest: list[StageHealth] = []
        self._context: PictureContext | None = None

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[StageHealth]:
        """Return every stage's health now, leaving the network as training left it."""
        network = network_of(pl_module, self.network_attribute)
        if self._context is None or self._context.network is not network:
            self._context = PictureContext(network, trainer.datamodule, pl_module.device)
        samples = self._context.samples(self.per_class, self.seed)
        # In the run's precision, as the pictures (see PictureCallback.draw).
        with left_as_found(network), run_precision(trainer):
            self.latest = stage_health(self._context, samples.inputs)
        return self.latest

    def record(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        """Measure and log the scalars at `step`."""
        start = time.perf_counter()
        metrics = health_metrics(self.measure(trainer, pl_module))
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        self.seconds += time.perf_counter() - start

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:  # a resumed run has its step-0 values already
            self.record(trainer, pl_module, 0)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # At the step of the epoch's other end-of-epoch metrics (Lightning's: one before).
        self.record(trainer, pl_module, max(trainer.global_step - 1, 0))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for health in self.latest:
            log.info(
                "%s (%s): %.0f%% of %d channels dead on the fixed validation images, filter "
                "norm spread %.3f",
                health.stage.name, health.stage.output, 100 * health.dead, health.channels,
                health.norm_spread,
            )  # fmt: skip

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._context = None
