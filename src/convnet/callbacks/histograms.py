"""Weight and gradient histograms per layer, computed on the device with few bins."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from convnet.callbacks.base import tensorboard_writers
from convnet.callbacks.layers import module_stages, network_of, stages
from convnet.callbacks.state import few_threads
from convnet.checks import positive_int

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def histogram_stats(values: Tensor, bins: int) -> Tensor:
    """Return [min, max, count, sum, sum of squares, bins counts...] of `values`, on their
    device, in one tensor (no host sync: the caller copies all layers' at once)."""
    values = values.detach().float().flatten()
    low, high = values.min(), values.max()
    width = (high - low).clamp_min(1e-12) / bins
    index = ((values - low) / width).floor().long().clamp(0, bins - 1)
    counts = torch.bincount(index, minlength=bins).float()
    summary = [low, high, values.new_tensor(values.numel()), values.sum(), values.square().sum()]
    return torch.cat([torch.stack(summary), counts])


class Histograms(L.Callback):
    """Histograms of each layer's weights (`weights/<stage>/<layer>`) and gradients
    (`gradients/<stage>/<layer>`) at the first optimizer step of every N-th epoch, and the
    final weights when training ends (at the last global step).

    <stage> is the stage holding the layer (`stage1`..`stageN`, `stem`, `head`, as in the
    pictures' tags), so a tag filter for a stage shows its histograms too.

    Layers are the Conv and Linear modules; with `include_norm_and_bias` also the biases
    and normalisation parameters. The statistics of all layers are computed on the device
    and copied to the host in one transfer, once per N epochs, never on other steps.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        bins: int = 30,
        include_norm_and_bias: bool = False,
        network_attribute: str = "model",
    ) -> None:
        self.every_n_epochs = positive_int(every_n_epochs, "callbacks.histograms.every_n_epochs")
        self.bins = positive_int(bins, "callbacks.histograms.bins")
        self.include_norm_and_bias = include_norm_and_bias
        self.network_attribute = network_attribute
        self.seconds = 0.0
        self._pending = False
        self._logged_step: int | None = None
        self._stage_of: dict[str, str] | None = None

    def parameters_to_log(
        self, network: nn.Module, stage_of: dict[str, str] | None = None
    ) -> dict[str, nn.Parameter]:
        """Return the parameters to draw, by tag name (`<stage>/<layer>` or
        `<stage>/<layer>.<parameter>`; `<layer>` alone for modules `stage_of` lacks)."""
        stage_of = stage_of or {}
        chosen = {}
        for name, module in network.named_modules():
            prefix = f"{stage_of[name]}/{name}" if name in stage_of else name
            for parameter_name, parameter in module.named_parameters(recurse=False):
                if isinstance(module, WEIGHTED) and parameter_name == "weight":
                    chosen[prefix] = parameter
                elif self.include_norm_and_bias:
                    chosen[f"{prefix}.{parameter_name}"] = parameter
        return chosen

    def stage_of(self, network: nn.Module, datamodule: Any) -> dict[str, str]:
        """Return {module name: stage name} (see layers.module_stages), found once per fit."""
        if self._stage_of is None:
            size = (
                getattr(datamodule, "in_channels", None),
                getattr(datamodule, "image_size", None),
            )
            # Only networks that declare no stages need the example, traced on the meta device.
            example = torch.empty(1, size[0], *size[1], device="meta") if None not in size else None
            try:
                self._stage_of = module_stages(network, stages(network, example))
            except ValueError:  # no stages found: tags name the layers alone
                self._stage_of = {}
        return self._stage_of

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = trainer.current_epoch % self.every_n_epochs == 0

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer
    ) -> None:
        # Gradients are complete (and unscaled under mixed precision) only here.
        if not self._pending:
            return
        self._pending = False
        writers = tensorboard_writers(trainer)
        if not trainer.is_global_zero or not writers:
            return
        start = time.perf_counter()
        network = network_of(pl_module, self.network_attribute)
        with few_threads(next(network.parameters())):
            self.log_histograms(writers, network, trainer)
        self.seconds += time.perf_counter() - start

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The final weights, after the last optimizer step; its gradients were logged with
        # the step they belong to, or not at all.
        writers = tensorboard_writers(trainer)
        if not trainer.is_global_zero or not writers or self._logged_step == trainer.global_step:
            return
        start = time.perf_counter()
        network = network_of(pl_module, self.network_attribute)
        with few_threads(next(network.parameters())):
            self.log_histograms(writers, network, trainer, gradients=False)
        self.seconds += time.perf_counter() - start

    def log_histograms(
        self, writers: list[Any], network: nn.Module, trainer: L.Trainer, gradients: bool = True
    ) -> None:
        """Write every chosen parameter's weight (and gradient) histogram at the global step."""
        tensors = {}
        self._logged_step = trainer.global_step
        with torch.no_grad():
            stage_of = self.stage_of(network, getattr(trainer, "datamodule", None))
            for name, parameter in self.parameters_to_log(network, stage_of).items():
                tensors[f"weights/{name}"] = parameter
                if gradients and parameter.grad is not None:
                    tensors[f"gradients/{name}"] = parameter.grad
            if not tensors:
                return
            stats = torch.stack([histogram_stats(t, self.bins) for t in tensors.values()]).cpu()
        for tag, row in zip(tensors, stats.double().tolist(), strict=True):
            low, high, count, total, squares, *counts = row
            high = max(high, low + 1e-12)  # a constant tensor still gets increasing limits
            limits = torch.linspace(low, high, self.bins + 1)[1:].tolist()
            for writer in writers:
                writer.add_histogram_raw(
                    tag, low, high, count, total, squares, limits, counts, trainer.global_step
                )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stage_of = None
