"""Check, before training, that images are large enough for a network's downsampling."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from convnet.models.layers import positive_int, to_pair

log = logging.getLogger(__name__)

# Image sides are searched up to this many pixels when looking for the smallest that works.
LARGEST_SIDE = 8192


@dataclass
class _Call:
    """A leaf module reached by the forward pass, with the feature map sizes it saw."""

    layer: str
    module: nn.Module
    input: tuple[int, ...] | None
    output: tuple[int, ...] | None = None


@dataclass
class _Failure:
    """Where a forward pass stopped: the leaf module and the feature map it received."""

    layer: str
    kind: str
    size: tuple[int, ...]
    reason: str


class _Vanished(Exception):
    """Raised from a hook when a feature map has no pixels left."""


def _spatial(value: object) -> tuple[int, ...] | None:
    # Only (B, C, H, W) feature maps have a spatial size worth reporting.
    if isinstance(value, torch.Tensor) and value.dim() == 4:
        return tuple(value.shape[-2:])
    return None


def meta_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the model's parameters and buffers as meta tensors by name, for functional_call.

    Meta tensors carry shapes only, so a forward pass with them costs no compute or memory
    and leaves the model's own tensors untouched.
    """
    return {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers())
    }


def _try_forward(
    model: nn.Module, in_channels: int, size: tuple[int, int]
) -> tuple[torch.Size | None, _Failure | None, list[_Call]]:
    """Return (output shape, None, calls) or (None, failure, calls) for a meta-device forward
    pass; calls lists the leaf modules reached, in order, with their feature map sizes."""
    state = meta_state(model)
    calls: list[_Call] = []

    def before(name: str, module: nn.Module, args: tuple[object, ...]) -> None:
        calls.append(_Call(name, module, _spatial(args[0]) if args else None))

    def after(module: nn.Module, args: tuple[object, ...], output: object) -> None:
        out = _spatial(output)
        calls[-1].output = out
        if out is not None and min(out) < 1:
            raise _Vanished(f"its output is {out[0]}x{out[1]}")

    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            handles.append(module.register_forward_pre_hook(lambda m, a, n=name: before(n, m, a)))
            handles.append(module.register_forward_hook(after))
    # Batch of 2: batch norm in training mode refuses a single value per channel.
    images = torch.empty(2, in_channels, *size, device="meta")
    try:
        output = torch.func.functional_call(model, state, (images,))
    except NotImplementedError:
        # A missing meta kernel says nothing about the image size; let the caller decide.
        raise
    except (RuntimeError, ValueError, _Vanished) as error:
        last = calls[-1] if calls else _Call("(input)", model, size)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (
            None,
            _Failure(last.layer, type(last.module).__name__, last.input or (), reason),
            calls,
        )
    finally:
        for handle in handles:
            handle.remove()
    return getattr(output, "shape", None), None, calls


def _sees_one_pixel(call: _Call) -> bool:
    """Return whether a convolution with a kernel larger than 1x1 sees at most one real pixel
    per output: along each side its kernel is 1 wide, or the map is 1 pixel wide, or the taps
    lie a dilation >= the map's width apart; its other weights multiply only padding."""
    module, size = call.module, call.input
    if not isinstance(module, nn.Conv2d) or size is None or len(size) != 2:
        return False
    kernel, dilation = module.kernel_size, module.dilation
    if all(k == 1 for k in kernel):
        return False  # a 1x1 convolution on a 1x1 map is a linear layer, as intended
    return all(k == 1 or n == 1 or d >= n for k, d, n in zip(kernel, dilation, size, strict=True))


def _one_pixel_convolutions(calls: list[_Call]) -> list[_Call]:
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
        return _try_forward(model, in_channels, (height, width))[1] is None

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
        shape, failure, calls = _try_forward(model, in_channels, size)
    except NotImplementedError as error:
        log.warning("Skipping the image size check for %s: %s", model_name, error)
        return None
    if failure is None:
        if warn_one_pixel:
            _warn(model, in_channels, size, model_name, calls)
        return shape
    at = "x".join(map(str, failure.size)) or "?"
    smallest = smallest() if smallest else smallest_image_size(model, in_channels, size)
    fix = (
        f"use images of at least {list(smallest)} (data.image_size) or a network that "
        "downsamples less"
        if smallest is not None
        else f"no image size up to {LARGEST_SIDE} works, so the failure is not about size"
    )
    raise ValueError(
        f"{model_name} cannot take image_size={list(size)} with {in_channels} channels: the "
        f"feature map is {at} when it reaches layer '{failure.layer}' ({failure.kind}), where "
        f"the forward pass fails ({failure.reason}). Fix: {fix}."
    )


def _no_one_pixel_convolution(model: nn.Module, in_channels: int, size: tuple[int, int]) -> bool:
    # A failure in a layer after the feature maps (a dense layer built for another size)
    # says nothing about them; one on a feature map means the size is too small.
    _, failure, calls = _try_forward(model, in_channels, size)
    return (failure is None or not failure.size) and not _one_pixel_convolutions(calls)


def _warn(
    model: nn.Module,
    in_channels: int,
    size: tuple[int, int],
    model_name: str,
    calls: list[_Call],
) -> list[str]:
    """Return the one-pixel convolutions among a forward pass's calls, warning if any."""
    wasted = _one_pixel_convolutions(calls)
    if not wasted:
        return []
    first = calls.index(wasted[0])
    # The layer that shrank the map: the last one before the first wasted conv to change it.
    shrunk = next(
        (c for c in reversed(calls[:first]) if c.input and c.output and c.input != c.output),
        calls[first],
    )
    stage = shrunk.layer.split(".")[0]
    at = "x".join(map(str, wasted[0].input or ()))
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
        shrunk.layer,
        stage,
        len(wasted),
        wasted[0].layer,
        larger,
    )
    return [call.layer for call in wasted]


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
        _, _, calls = _try_forward(model, positive_int(in_channels, "in_channels"), size)
    except NotImplementedError:
        return []
    return _warn(model, in_channels, size, model_name, calls)
