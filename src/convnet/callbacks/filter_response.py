"""What a channel responds to: inputs optimised by gradient ascent to excite it, honestly.

The usual regularised activation maximisation (Erhan et al., 2009; Yosinski et al., 2015):
the input is shifted by a random jitter each step, decayed towards zero, blurred every
few steps and kept within the range of real images. Two things keep it truthful:

- the ascent maximises the stage's pre-activation (the input of the activation that makes
  its output, e.g. the batch norm output before a ReLU), which has a gradient even where
  the ReLU output is zero; maximising the ReLU output from small noise stalls at once;
- each channel starts from the fixed validation image that excites it most, where it is
  alive, and keeps the best input seen, so the activation it reaches is at least that
  image's, which is at least the channel's mean on real images.

Each tile says the activation reached against the channel's mean on the validation images;
a channel that never fires on them is labelled dead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.transforms.v2.functional import gaussian_blur

from convnet.callbacks.base import Picture, PictureCallback, PictureContext, Pictures
from convnet.callbacks.layers import named_modules
from convnet.callbacks.render import as_rgb, labelled_grid, resize
from convnet.callbacks.samples import input_range, pixels_of
from convnet.callbacks.tags import picture_tag
from convnet.checks import positive_int
from convnet.models.trace import trace

# Element-wise activations whose input is the pre-activation signal to maximise.
ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
    nn.Tanh, nn.Sigmoid,
)  # fmt: skip


def stage_signals(
    network: nn.Module, name: str, layer: nn.Module, inputs: Tensor
) -> tuple[Tensor, Tensor]:
    """Return (pre-activation, output) (N, C, h, w) of `layer` (named `name`) for `inputs`.

    The pre-activation is the input of the activation module whose result is the layer's
    output (the layer itself, as VGG's ReLU, or its last one, as a residual stage's
    relu(x + body(x))); where no activation makes the output, the output itself.
    """
    modules = dict(layer.named_modules(prefix=name))
    calls = trace(network, inputs, modules, stop_early=True).calls
    output = next((c.output for c in calls if c.name == name and c.finished >= 0), None)
    if not isinstance(output, Tensor):
        raise ValueError(f"{name} did not run in {type(network).__name__}'s forward pass")
    for call in reversed(calls):
        made_output = call.output is output and call.input is not output  # not in place
        if made_output and isinstance(call.module, ACTIVATIONS) and call.input is not None:
            return call.input, output
    return output, output


def channel_means(maps: Tensor, channels: Sequence[int]) -> Tensor:
    """Return (N,) the spatial mean of channel channels[i] of `maps` (N, C, h, w) for item i."""
    index = torch.as_tensor(list(channels), device=maps.device)
    return maps[torch.arange(len(index), device=maps.device), index].float().mean(dim=(1, 2))


def mean_activation(
    network: nn.Module, name: str, layer: nn.Module, inputs: Tensor, channels: Sequence[int]
) -> Tensor:
    """Return (N,) the mean output of channel channels[i] of `layer` for input i."""
    _, output = stage_signals(network, name, layer, inputs)
    return channel_means(output, channels)


def maximise_channels(
    network: nn.Module,
    name: str,
    layer: nn.Module,
    channels: Sequence[int],
    start: Tensor,
    steps: int = 48,
    lr: float = 0.05,
    jitter: int = 2,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    decay: float = 0.01,
    seed: int = 0,
    bounds: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Return (inputs, reached): for each channel the input that gave its highest mean output
    during the ascent from `start` (len(channels), C, H, W), and that mean output (N,).

    Each input's channel pre-activation is maximised with Adam at `lr` (see stage_signals);
    the best input seen is kept, `start` included. Inputs live in the network's normalised
    input space; every random draw uses a generator seeded by `seed`, so the same weights
    give the same pictures. The network's parameters must not require grad (see
    `left_as_found`). jitter: pixels of random shift per step; decay: share of the input
    taken away after each step; blur_every: steps between Gaussian blurs of `blur_sigma`
    pixels (0: never); bounds: per-channel (low, high) of real images, inputs are clamped to.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = start.detach().clone().requires_grad_(True)
    low, high = (
        (b.to(start.device)[None, :, None, None] for b in bounds) if bounds else (None, None)
    )
    with torch.no_grad():
        best = mean_activation(network, name, layer, inputs, channels)
    best_inputs = inputs.detach().clone()
    optimizer = torch.optim.Adam([inputs], lr=lr)
    for step in range(steps):
        dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
        shifted = torch.roll(inputs, shifts=(dy, dx), dims=(2, 3))
        signal, output = stage_signals(network, name, layer, shifted)
        reached = channel_means(output.detach(), channels)
        better = reached > best
        best = torch.where(better, reached, best)
        best_inputs[better] = shifted.detach()[better]
        optimizer.zero_grad(set_to_none=True)
        (-channel_means(signal, channels).sum()).backward()
        optimizer.step()
        with torch.no_grad():
            inputs.mul_(1 - decay)
            if blur_every and blur_sigma > 0 and (step + 1) % blur_every == 0:
                inputs.copy_(gaussian_blur(inputs, kernel_size=3, sigma=blur_sigma))
            if low is not None:
                inputs.copy_(inputs.clamp(low, high))
    with torch.no_grad():
        final = mean_activation(network, name, layer, inputs, channels)
    better = final > best
    best_inputs[better] = inputs.detach()[better]
    return best_inputs, torch.where(better, final, best)


@dataclass(frozen=True)
class RealActivity:
    """A stage's channels on the fixed validation images.

    means: (C,) each channel's mean output; peaks: (C,) its highest output anywhere;
    favourite: (C,) the index of the image with the channel's highest mean output;
    favourite_signal: (C,) likewise by pre-activation (what dead channels start from).
    """

    means: Tensor
    peaks: Tensor
    favourite: Tensor
    favourite_signal: Tensor
    ranking: Tensor  # (C,) channels, most often among the images' top channels first

    @property
    def alive(self) -> Tensor:
        """Return (C,) whether each channel fired (output above 0) on some image."""
        return self.peaks > 0


def real_activity(signal: Tensor, output: Tensor, top_k: int) -> RealActivity:
    """Return the RealActivity of pre-activations `signal` and outputs `output` (N, C, h, w).

    ranking orders channels as the feature maps pick them: by how many images have the
    channel among their `top_k` of highest mean output, then by mean output.
    """
    per_image = output.detach().float().mean(dim=(2, 3))  # (N, C, h, w) -> (N, C)
    top = per_image.topk(min(top_k, per_image.shape[1]), dim=1)
    votes = torch.zeros(per_image.shape[1], device=per_image.device)
    # A silent channel is no image's pick, whatever place a tie among zeros gives it.
    votes.index_add_(0, top.indices.flatten(), (top.values > 0).flatten().float())
    means = per_image.mean(dim=0)
    # Votes first, mean output second: the mean is below 1e6 for any sane network.
    ranking = (votes * 1e6 + means).argsort(descending=True)
    return RealActivity(
        means=means.cpu(),
        peaks=output.detach().float().amax(dim=(0, 2, 3)).cpu(),
        favourite=per_image.argmax(dim=0).cpu(),
        favourite_signal=signal.detach().float().mean(dim=(2, 3)).argmax(dim=0).cpu(),
        ranking=ranking.cpu(),
    )


@dataclass(frozen=True)
class Response:
    """What the ascent found for one layer: `module`'s channels `channels`, the inputs
    (F, C, H, W) that excite them most, the mean output each reached (F,), and the
    channels' RealActivity on the fixed validation images."""

    module: str
    channels: list[int]
    inputs: Tensor
    reached: Tensor
    activity: RealActivity


def tile_label(channel: int, reached: float, activity: RealActivity) -> str:
    """Return a tile's label: the channel, then the mean output reached "vs" the channel's
    mean on the validation images, or DEAD when it never fires on them."""
    if not activity.alive[channel]:
        return f"ch {channel}\nDEAD"
    return f"ch {channel}\n{reached:.2g} vs {activity.means[channel]:.2g}"


def filter_response_image(
    pixels: Tensor,
    channels: Sequence[int],
    reached: Tensor,
    activity: RealActivity,
    tile_size: int = 96,
) -> Tensor:
    """Return a (3, H, W) grid of optimised inputs `pixels` (F, c, H, W) in [0, 1], four a
    row, each labelled as `tile_label` says."""
    tiles = as_rgb(resize(pixels.float().cpu(), tile_size))
    labels = [tile_label(c, r, activity) for c, r in zip(channels, reached.tolist(), strict=True)]
    return labelled_grid(tiles, labels, columns=4)


def description(layer: str, module: str, steps: int, count: int) -> str:
    """Return what a filter-response picture of `layer` (module `module`) shows."""
    return (
        f"What excites {count} channels of {layer}'s output ({module}), the channels the feature "
        "maps show most often. Each tile is an input found by gradient ascent on the channel's "
        f"pre-activation (the signal before the stage's activation, which has a gradient where "
        f"the ReLU is zero), {steps} steps from the validation image that excites it most, with "
        "jitter, decay and blur, kept within the range of real images; shown as an image, the "
        "data's normalisation undone. Under each tile: the channel, then 'A vs B': A the "
        "channel's mean output for that input, B its mean over the fixed validation images "
        "(A is never below the best real image's). DEAD: the channel's output is zero on every "
        "fixed validation image."
    )


class FilterResponse(PictureCallback):
    """Inputs that excite chosen channels of deeper stages, `<stage>/filter_response`.

    layers: module names; null for the output of every stage but the first.
    channels: channel indices to show (for every layer); null for the `filters_per_layer`
        channels the feature maps show most often (those of highest mean output per image).
    per_class, max_images, seed: the fixed validation images, as the feature maps take them.
    Other arguments as in `maximise_channels`.
    """

    name = "filter_response"

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        channels: Sequence[int] | None = None,
        filters_per_layer: int = 8,
        per_class: int = 1,
        max_images: int = 20,
        steps: int = 48,
        lr: float = 0.05,
        jitter: int = 2,
        blur_every: int = 4,
        blur_sigma: float = 0.5,
        decay: float = 0.01,
        seed: int = 0,
        tile_size: int = 96,
        every_n_epochs: int = 1,
        at_start: bool = True,
        network_attribute: str = "model",
    ) -> None:
        super().__init__(every_n_epochs, at_start, network_attribute)
        key = "callbacks.filter_response"
        self.layers = list(layers) if layers is not None else None
        self.channels = list(channels) if channels is not None else None
        self.filters_per_layer = positive_int(filters_per_layer, f"{key}.filters_per_layer")
        self.per_class = positive_int(per_class, f"{key}.per_class")
        self.max_images = positive_int(max_images, f"{key}.max_images")
        self.steps = positive_int(steps, f"{key}.steps")
        self.seed = seed
        self.options = {
            "lr": lr,
            "jitter": jitter,
            "blur_every": blur_every,
            "blur_sigma": blur_sigma,
            "decay": decay,
            "seed": seed,
        }
        self.tile_size = positive_int(tile_size, f"{key}.tile_size")

    def layer_tags(self, context: PictureContext) -> dict[str, str]:
        """Return {module name: stage name} of the layers to draw (see
        PictureContext.stage_name): the configured ones, or every stage's output after the
        first."""
        if self.layers is not None:
            return {layer: context.stage_name(layer) for layer in self.layers}
        outputs = [(stage.output, stage.name) for stage in context.stages()]
        return dict(outputs[1:] or outputs)

    def responses(self, context: PictureContext) -> dict[str, Response]:
        """Return each layer's Response, by stage name (or module name, see layer_tags)."""
        tags = self.layer_tags(context)
        layers = named_modules(context.network, list(tags), "callbacks.filter_response.layers")
        samples = context.samples(self.per_class, self.seed).spread(self.max_images)
        bounds = input_range(context.datamodule, context.datamodule.in_channels)
        found = {}
        for module, layer in layers.items():
            with torch.no_grad():
                signal, output = stage_signals(context.network, module, layer, samples.inputs)
            activity = real_activity(signal, output, self.filters_per_layer)
            channels = self._channels(module, activity)
            index = torch.tensor(channels)
            # A live channel starts where it fires most; a dead one where it comes closest.
            start = torch.where(
                activity.alive[index], activity.favourite[index], activity.favourite_signal[index]
            )
            inputs, reached = maximise_channels(
                context.network, module, layer, channels,
                samples.inputs[start.to(samples.inputs.device)], self.steps,
                **self.options, bounds=bounds,
            )  # fmt: skip
            found[tags[module]] = Response(module, channels, inputs, reached.cpu(), activity)
        return found

    def pictures(self, context: PictureContext) -> Pictures:
        return [
            Picture(
                tag=picture_tag(tag, "filter_response"),
                image=filter_response_image(
                    pixels_of(response.inputs, context.datamodule),
                    response.channels,
                    response.reached,
                    response.activity,
                    self.tile_size,
                ),
                description=description(tag, response.module, self.steps, len(response.channels)),
                display_name=f"{tag} filter response ({response.module})",
            )
            for tag, response in self.responses(context).items()
        ]

    def _channels(self, layer: str, activity: RealActivity) -> list[int]:
        total = activity.means.numel()
        if self.channels is None:
            return activity.ranking[: self.filters_per_layer].tolist()
        wrong = [c for c in self.channels if not 0 <= c < total]
        if wrong:
            raise ValueError(
                f"callbacks.filter_response.channels={self.channels}: {layer} has {total} "
                f"channels, so {wrong} do not exist; use indices 0..{total - 1}."
            )
        return self.channels
