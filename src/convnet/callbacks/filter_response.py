"""What a filter responds to: inputs optimised by gradient ascent to excite chosen channels.

The usual regularised activation maximisation (Erhan et al., 2009; Yosinski et al., 2015):
the input is shifted by a random jitter each step, decayed towards zero, blurred every
few steps and kept within the range of real images, which keeps it from turning into
high-frequency noise of ever larger amplitude.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.transforms.v2.functional import gaussian_blur

from convnet.callbacks.base import PictureCallback, PictureContext, Pictures
from convnet.callbacks.layers import named_modules
from convnet.callbacks.render import as_rgb, image_grid, label_tiles, resize
from convnet.callbacks.samples import input_range, pixels_of
from convnet.checks import positive_int
from convnet.models.trace import capture_outputs


def evenly_spaced(count: int, total: int) -> list[int]:
    """Return `count` channel indices spread evenly over 0..total-1 (all when fewer)."""
    if count >= total:
        return list(range(total))
    return torch.linspace(0, total - 1, count).round().long().tolist()


def mean_activation(
    network: nn.Module, layer: nn.Module, inputs: Tensor, channels: Sequence[int]
) -> Tensor:
    """Return (N,) the mean activation of channel channels[i] of `layer` for input i."""
    (output,) = capture_outputs(network, {"layer": layer}, inputs, stop_early=True).values()
    index = torch.as_tensor(list(channels), device=output.device)
    return output[torch.arange(len(index), device=output.device), index].float().mean(dim=(1, 2))


def maximise_channels(
    network: nn.Module,
    layer: nn.Module,
    channels: Sequence[int],
    shape: Sequence[int],
    steps: int = 48,
    lr: float = 0.1,
    jitter: int = 2,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    decay: float = 0.01,
    seed: int = 0,
    bounds: tuple[Tensor, Tensor] | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Return inputs (len(channels), *shape) that each maximise one channel's mean activation.

    Inputs live in the network's (normalised) input space and start as small noise drawn
    from `seed`, so the same weights always give the same pictures; every random draw
    uses a private generator. The network's parameters must not require grad (see
    `left_as_found`): only the inputs are optimised, with Adam at `lr`.
    jitter: pixels of random shift per step; decay: share of the input taken away after
    each step; blur_every: steps between Gaussian blurs of `blur_sigma` pixels (0: never);
    bounds: per-channel (low, high) the inputs are clamped to (the range of real images).
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = (0.1 * torch.randn(len(channels), *shape, generator=generator)).to(device)
    inputs.requires_grad_(True)
    low, high = (b.to(device)[None, :, None, None] for b in bounds) if bounds else (None, None)
    optimizer = torch.optim.Adam([inputs], lr=lr)
    for step in range(steps):
        dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
        shifted = torch.roll(inputs, shifts=(dy, dx), dims=(2, 3))
        activation = mean_activation(network, layer, shifted, channels)
        optimizer.zero_grad(set_to_none=True)
        (-activation.sum()).backward()
        optimizer.step()
        with torch.no_grad():
            inputs.mul_(1 - decay)
            if blur_every and blur_sigma > 0 and (step + 1) % blur_every == 0:
                inputs.copy_(gaussian_blur(inputs, kernel_size=3, sigma=blur_sigma))
            if low is not None:
                inputs.copy_(inputs.clamp(low, high))
    return inputs.detach()


def filter_response_picture(
    pixels: Tensor, channels: Sequence[int], layer: str, steps: int, tile_size: int = 64
) -> Tensor:
    """Return a picture of optimised inputs shown as images, `pixels` (F, c, H, W) in [0, 1]."""
    tiles = as_rgb(resize(pixels.float().cpu(), tile_size))
    caption = (
        f"{layer}: inputs that maximise each channel's mean activation ({steps} steps of "
        "gradient ascent with jitter, decay and blur, within the range of real images); "
        "shown as images, the data's normalisation undone; a flat tile: nothing excited it"
    )
    labels = [f"ch {c}" for c in channels]
    return image_grid(label_tiles(tiles, labels), nrow=8, scale=None, caption=caption)


class FilterResponse(PictureCallback):
    """Inputs that excite chosen channels of deeper layers, `filter_response/<layer>`.

    layers: module names; null for the output of every stage but the first.
    channels: channel indices to show (for every layer); null for `filters_per_layer`
        channels spread evenly over each layer's channels.
    Other arguments as in `maximise_channels`.
    """

    name = "filter_response"

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        channels: Sequence[int] | None = None,
        filters_per_layer: int = 8,
        steps: int = 48,
        lr: float = 0.1,
        jitter: int = 2,
        blur_every: int = 4,
        blur_sigma: float = 0.5,
        decay: float = 0.01,
        seed: int = 0,
        tile_size: int = 64,
        every_n_epochs: int = 1,
        at_start: bool = True,
        network_attribute: str = "model",
    ) -> None:
        super().__init__(every_n_epochs, at_start, network_attribute)
        self.layers = list(layers) if layers is not None else None
        self.channels = list(channels) if channels is not None else None
        self.filters_per_layer = positive_int(
            filters_per_layer, "callbacks.filter_response.filters_per_layer"
        )
        self.steps = positive_int(steps, "callbacks.filter_response.steps")
        self.options = {
            "lr": lr,
            "jitter": jitter,
            "blur_every": blur_every,
            "blur_sigma": blur_sigma,
            "decay": decay,
            "seed": seed,
        }
        self.tile_size = positive_int(tile_size, "callbacks.filter_response.tile_size")

    def layer_names(self, context: PictureContext) -> list[str]:
        """Return the configured layers, or the output of every stage after the first."""
        if self.layers is not None:
            return self.layers
        outputs = [stage.output for stage in context.stages()]
        return outputs[1:] or outputs

    def pictures(self, context: PictureContext) -> Pictures:
        names = self.layer_names(context)
        layers = named_modules(context.network, names, "callbacks.filter_response.layers")
        datamodule = context.datamodule
        shape = (datamodule.in_channels, *datamodule.image_size)
        bounds = input_range(datamodule, datamodule.in_channels)
        pictures = {}
        for name, layer in layers.items():
            probe = torch.zeros(1, *shape, device=context.device)
            with torch.no_grad():
                (output,) = capture_outputs(context.network, {name: layer}, probe, True).values()
            channels = self._channels(name, output.shape[1])
            inputs = maximise_channels(
                context.network, layer, channels, shape, self.steps, **self.options,
                bounds=bounds, device=context.device,
            )  # fmt: skip
            pictures[f"filter_response/{name}"] = filter_response_picture(
                pixels_of(inputs, datamodule), channels, name, self.steps, self.tile_size
            )
        return pictures

    def _channels(self, layer: str, total: int) -> list[int]:
        if self.channels is None:
            return evenly_spaced(self.filters_per_layer, total)
        wrong = [c for c in self.channels if not 0 <= c < total]
        if wrong:
            raise ValueError(
                f"callbacks.filter_response.channels={self.channels}: {layer} has {total} "
                f"channels, so {wrong} do not exist; use indices 0..{total - 1}."
            )
        return self.channels
