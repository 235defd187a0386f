"""Check, before training, that images are large enough for a network's downsampling."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

from convnet.checks import counted, positive_int, to_pair
from convnet.models.trace import Call, Trace, trace

log = logging.getLogger(__name__)

# Image sides are searched up to this many pixels when looking for the smallest that works.
LARGEST_SIDE = 8192

N = TypeVar("N", bound=nn.Module)


def _try_forward(model: nn.Module, in_channels: int, size: tuple[int, int]) -> Trace:
    """Return the trace of a meta-device forward pass of a batch of 2 images of `size`."""
    # A batch of 2, the smallest a training step takes (batch norm needs two values).
    return trace(model, torch.empty(2, in_channels, *size, device="meta"))


def failure_of(
    traced: Trace, model: nn.Module, size: tuple[int, int] | None
) -> tuple[str, str, str, str]:
    """Return (layer, its type, the map size it received, the reason) of a failed pass."""
    failed = traced.failed
    layer, module = (failed.name, failed.module) if failed else ("(input)", model)
    at = failed.input_size if failed else size
    text = str(traced.error).strip()
    reason = text.splitlines()[0] if text else type(traced.error).__name__
    return layer, type(module).__name__, "x".join(map(str, at or ())) or "?", reason


def _sees_one_pixel(call: Call) -> bool:
    """Return whether a convolution with a kernel larger than 1x1 sees at most one real pixel
    per output: along each side its kernel is 1 wide, or the map is 1 pixel wide, or the taps
    lie a dilation >= the map's width apart; its other weights multiply only padding."""
    module, size = call.module, call.input_size
    if not isinstance(module, nn.Conv2d) or size is None:
        return False
    kernel, dilation = module.kernel_size, module.dilation
    if all(k == 1 for k in kernel):
        return False  # a 1x1 convolution on a 1x1 map is a linear layer, as intended
    return all(k == 1 or n == 1 or d >= n for k, d, n in zip(kernel, dilation, size, strict=True))


def _one_pixel_convolutions(calls: list[Call]) -> list[Call]:
    return [call for call in calls if _sees_one_pixel(call)]


def _smallest_side(fits: Callable[[int], bool], start: int) -> int | None:
    """Return the smallest side >= 1 for which `fits(side)` holds, assuming it is monotone."""
    high = max(start, 1)
    while not fits(high):
        if high >= LARGEST_SIDE:
            return None
        high = min(high * 2, LARGEST_SIDE)
    low = 0  # fits(low) is taken to be false: no image has zero pixels.
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return high


def smallest_image_size(
    model: nn.Module, in_channels: int, image_size: tuple[int, int]
) -> tuple[int, int] | None:
    """Return the smallest [height, width] the model accepts, or None if none up to 8192 works.

    Downsampling shrinks height and width independently, so each side is searched while the
    other is held at a size that works.
    """

    def fits(height: int, width: int) -> bool:
        return _try_forward(model, in_channels, (height, width)).error is None

    square = _smallest_side(lambda side: fits(side, side), max(image_size))
    if square is None:
        return None
    height = _smallest_side(lambda side: fits(side, max(square, image_size[1])), square)
    width = _smallest_side(lambda side: fits(max(square, image_size[0]), side), square)
    if height is not None and width is not None and fits(height, width):
        return height, width
    return square, square


def check_image_size(
    model: nn.Module,
    in_channels: int,
    image_size: int | Sequence[int],
    model_name: str = "model",
    smallest: Callable[[], tuple[int, int] | None] | None = None,
    warn_one_pixel: bool = True,
) -> torch.Size | None:
    """Return the model's output shape for a batch of 2 images of `image_size`.

    Raises ValueError when the images are too small for the network's downsampling, naming
    the layer where the feature map vanished (or the forward pass failed), its size there and
    the smallest image size that works. Runs on the meta device, so it costs no compute.
    Returns None, with a warning, if a module has no meta-device implementation.
    Logs a warning when convolutions run on a map shrunk to one pixel (see
    `warn_one_pixel_convolutions`), unless warn_one_pixel is False.
    smallest: gives the image size to suggest in the error; by default the smallest size
        `model` itself takes (a model still being built can know better).
    """
    positive_int(in_channels, "in_channels")
    size = to_pair(image_size, "image_size")
    try:
        traced = _try_forward(model, in_channels, size)
    except NotImplementedError as error:
        log.warning("Skipping the image size check for %s: %s", model_name, error)
        return None
    if traced.error is not None:
        suggestion = smallest() if smallest else smallest_image_size(model, in_channels, size)
        raise size_error(model_name, size, in_channels, failure_of(traced, model, size), suggestion)
    if warn_one_pixel:
        _warn(model, in_channels, size, model_name, traced.leaves)
    return getattr(traced.output, "shape", None)


def size_error(
    model_name: str,
    size: tuple[int, int],
    in_channels: int,
    failure: tuple[str, str, str, str],
    smallest: tuple[int, int] | None,
) -> ValueError:
    """Return the error for images too small: where the pass failed (layer, type, map size,
    reason) and the fix, the smallest image size that works if there is one."""
    layer, kind, at, reason = failure
    fix = (
        f"use images of at least {list(smallest)} (data.image_size) or a network that "
        "downsamples less"
        if smallest is not None
        else f"no image size up to {LARGEST_SIDE} works, so the failure is not about size"
    )
    return ValueError(
        f"{model_name} cannot take image_size={list(size)} with "
        f"{counted(in_channels, 'channel')}: the "
        f"feature map is {at} when it reaches layer '{layer}' ({kind}), where the forward "
        f"pass fails ({reason}). Fix: {fix}."
    )


def _no_one_pixel_convolution(model: nn.Module, in_channels: int, size: tuple[int, int]) -> bool:
    # A failure in a layer after the feature maps (a dense layer built for another size)
    # says nothing about them; one on a feature map means the size is too small.
    traced = _try_forward(model, in_channels, size)
    on_flat_features = traced.failed is not None and traced.failed.input_size is None
    return (traced.error is None or on_flat_features) and not _one_pixel_convolutions(traced.leaves)


def _warn(
    model: nn.Module,
    in_channels: int,
    size: tuple[int, int],
    model_name: str,
    calls: list[Call],
) -> list[str]:
    """Return the one-pixel convolutions among a forward pass's leaf calls, warning if any."""
    wasted = _one_pixel_convolutions(calls)
    if not wasted:
        return []
    first = calls.index(wasted[0])
    # The layer that shrank the map: the last one before the first wasted conv to change it.
    shrunk = next(
        (
            c
            for c in reversed(calls[:first])
            if c.input_size and c.output_size and c.input_size != c.output_size
        ),
        calls[first],
    )
    stage = shrunk.name.split(".")[0]
    at = "x".join(map(str, wasted[0].input_size or ()))
    side = _smallest_side(
        lambda side: _no_one_pixel_convolution(model, in_channels, (side, side)), max(size)
    )
    larger = f"at least [{side}, {side}]" if side is not None else "larger images"
    log.warning(
        "%s on image_size=%s: the feature map is %s after layer '%s' (stage '%s'), so %d "
        "convolution(s) with kernels larger than 1x1, the first '%s', see one pixel each and "
        "padding: their other weights multiply only zeros. Fix: use images of %s "
        "(data.image_size), a stem that keeps the resolution (model.stem=cifar for a ResNet), "
        "or fewer downsampling stages.",
        model_name,
        list(size),
        at,
        shrunk.name,
        stage,
        len(wasted),
        wasted[0].name,
        larger,
    )
    return [call.name for call in wasted]


def warn_one_pixel_convolutions(
    model: nn.Module, in_channels: int, image_size: int | Sequence[int], model_name: str = "model"
) -> list[str]:
    """Return the convolutions that see one real pixel, logging a warning if there are any.

    Such a convolution has a kernel larger than 1x1 but, along each side, either a kernel 1
    wide or a map 1 pixel wide (or taps a dilation >= the map apart): every output sees a
    single pixel and padding, so it trains like a 1x1 convolution with wasted weights. This
    happens when a network downsamples its images to 1x1 before its last stage (resnet18's
    ImageNet stem on 16x16 images reaches 1x1 in layer3). A map that reaches 1x1 only at the
    global pooling (vgg16 on 32x32) or never (resnet20 on 32x32, 8x8 at the end) is fine.
    """
    size = to_pair(image_size, "image_size")
    try:
        traced = _try_forward(model, positive_int(in_channels, "in_channels"), size)
    except NotImplementedError:
        return []
    return _warn(model, in_channels, size, model_name, traced.leaves)


def check_network(network: N) -> N:
    """Return `network` once it is known to take its own images (`in_channels`, `image_size`).

    The one size check of a built network, for every builder to call: raises as
    `check_image_size` does when the images are too small, and warns about convolutions
    that see one pixel. A network without `in_channels` and `image_size` (not convnet's) is
    returned unchecked. Networks stay size-agnostic: nothing here changes them.
    """
    in_channels = getattr(network, "in_channels", None)
    image_size = getattr(network, "image_size", None)
    if in_channels is not None and image_size is not None:
        check_image_size(network, in_channels, image_size, model_name=type(network).__name__)
    return network
