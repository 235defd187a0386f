"""The layer table (shapes, parameters, receptive fields, MACs) at the start of training."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
from lightning.pytorch.callbacks import ModelSummary
from torch import nn

from convnet.callbacks.base import PictureContext
from convnet.callbacks.health import stage_health
from convnet.callbacks.state import left_as_found
from convnet.console import show
from convnet.summary import StageColumns, summarize, summary_table

log = logging.getLogger(__name__)


def _input_size(model: nn.Module, trainer: L.Trainer) -> tuple[int, int | Sequence[int]] | None:
    """Return (in_channels, image_size) from the model, else the datamodule, else None."""
    for source in (model, getattr(trainer, "datamodule", None)):
        channels = getattr(source, "in_channels", None)
        size = getattr(source, "image_size", None)
        if channels is not None and size is not None:
            return channels, size
    return None


def stage_columns(
    network: nn.Module, trainer: L.Trainer, device: object, per_class: int = 10
) -> dict[str, StageColumns]:
    """Return {stage output module: StageColumns} with each stage's filter health on the
    fixed validation images (`per_class` per class); {} for a network with no declared
    stages when there is no datamodule to trace it with, names alone without images."""
    datamodule = getattr(trainer, "datamodule", None)
    context = PictureContext(network, datamodule, device)
    try:
        found = context.stages()
    except (AttributeError, ValueError) as error:
        log.debug("LayerSummary: no stages (%s)", error)
        return {}
    try:
        samples = context.samples(per_class, seed=0)
    except (AttributeError, ValueError) as error:
        log.debug("LayerSummary: no filter health (%s)", error)
        return {stage.output: StageColumns(stage.name) for stage in found}
    with left_as_found(network):
        healths = stage_health(context, samples.inputs)
    return {h.stage.output: StageColumns(h.stage.name, h.dead, h.norm_spread) for h in healths}


class LayerSummary(ModelSummary):
    """Draw convnet's layer table when fitting starts, on the global-zero process only.

    Being a ModelSummary, it takes the place of Lightning's default summary (no second table).
    max_depth: -1 gives a row per layer call, n > 0 one row per module at depth n
        (`layer1.0` is depth 2), 0 turns the table off. The input size comes from the
    network's `in_channels` and `image_size` (every convnet model has them), else from the
    datamodule's. Each stage's last row names the stage and its filter health at the start
    (see convnet.callbacks.health; FilterHealth logs it over training).
    """

    def __init__(self, max_depth: int = -1) -> None:
        super().__init__(max_depth=max_depth)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._max_depth or not trainer.is_global_zero:
            return
        network = getattr(pl_module, "model", pl_module)
        size = _input_size(network, trainer)
        if size is None:
            log.warning(
                "LayerSummary: no in_channels/image_size on %s or the datamodule; no table.",
                type(network).__name__,
            )
            return
        in_channels, image_size = size
        summary = summarize(network, in_channels, image_size, max_depth=self._max_depth)
        stages = stage_columns(network, trainer, getattr(pl_module, "device", "cpu"))
        show(summary_table(summary, title=type(network).__name__, stages=stages))
        log.info(
            "%s: %s parameters, %s MACs (%s FLOPs) per image",
            type(network).__name__,
            f"{summary.parameters:,}",
            f"{summary.macs:,}",
            f"{summary.flops:,}",
        )
