"""Weight and gradient histograms per layer, computed on the device with few bins."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from convnet.callbacks.base import tensorboard_writers
from convnet.callbacks.layers import network_of
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
    """Histograms of each layer's weights (`weights/<layer>`) and gradients
    (`gradients/<layer>`) at the first optimizer step of every N-th epoch.

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

    def parameters_to_log(self, network: nn.Module) -> dict[str, nn.Parameter]:
        """Return the parameters to draw, by tag name (`<layer>` or `<layer>.<parameter>`)."""
        chosen = {}
        for name, module in network.named_modules():
            for parameter_name, parameter in module.named_parameters(recurse=False):
                if isinstance(module, WEIGHTED) and parameter_name == "weight":
                    chosen[name] = parameter
                elif self.include_norm_and_bias:
                    chosen[f"{name}.{parameter_name}"] = parameter
        return chosen

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

    def log_histograms(self, writers: list[Any], network: nn.Module, trainer: L.Trainer) -> None:
        """Write every chosen parameter's weight and gradient histogram at the global step."""
        tensors = {}
        with torch.no_grad():
            for name, parameter in self.parameters_to_log(network).items():
                tensors[f"weights/{name}"] = parameter
                if parameter.grad is not None:
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
