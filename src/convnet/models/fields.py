"""Receptive fields: how many input pixels one value of a feature map sees, and how far apart
neighbouring values are (the jump, the product of the strides so far)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from torch import Tensor, nn

from convnet.checks import to_pair
from convnet.models.resnet_blocks import PadShortcut
from convnet.models.trace import Call, Trace

Pair = tuple[int, int]


@dataclass(frozen=True)
class Field:
    """The receptive field of one value of a feature map, in input pixels, per (height, width).

    size: how many input pixels one value depends on (its theoretical receptive field).
    jump: how many input pixels apart two neighbouring values of the map are (the product of
        the strides so far).
    extent: the (height, width) of the map these values belong to.
    """

    size: Pair
    jump: Pair
    extent: Pair

    def through(self, kernel: Pair, stride: Pair, dilation: Pair = (1, 1)) -> Field:
        """Return the field after a sliding window (conv or pool) of `kernel` and `stride`."""
        size = tuple(
            r + d * (k - 1) * j
            for r, k, d, j in zip(self.size, kernel, dilation, self.jump, strict=True)
        )
        jump = tuple(j * s for j, s in zip(self.jump, stride, strict=True))
        return Field(size, jump, self.extent)

    def whole_map(self) -> Field:
        """Return the field of a value that depends on every position of the map (dense,
        global pooling): the window spans the whole extent."""
        return self.through(self.extent, (1, 1)).with_extent((1, 1))

    def with_extent(self, extent: Pair) -> Field:
        """Return the same field on a map of another (height, width)."""
        return replace(self, extent=extent)


def _adaptive_window(size_in: int, size_out: int) -> tuple[int, int]:
    """Return (widest window, stride) of adaptive pooling from size_in to size_out."""
    # PyTorch's windows: [floor(i * n / o), ceil((i + 1) * n / o)); uneven when o does not
    # divide n, so the widest one is the receptive field.
    widest = max(
        math.ceil((i + 1) * size_in / size_out) - (i * size_in) // size_out for i in range(size_out)
    )
    return widest, max(size_in // size_out, 1)


def _spatial_step(module: nn.Module, field: Field, size_in: Pair, size_out: Pair) -> Field:
    """Return the field after `module` for a (B, C, H, W) input; pointwise layers keep it."""
    if isinstance(module, nn.Conv2d):
        return field.through(module.kernel_size, module.stride, module.dilation)
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        dilation = getattr(module, "dilation", 1)
        return field.through(
            to_pair(module.kernel_size, "kernel_size"),
            to_pair(module.stride, "stride"),
            to_pair(dilation, "dilation"),
        )
    if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        windows = [_adaptive_window(n, o) for n, o in zip(size_in, size_out, strict=True)]
        return field.through((windows[0][0], windows[1][0]), (windows[0][1], windows[1][1]))
    if isinstance(module, PadShortcut):
        return field.through((1, 1), (module.stride, module.stride))
    return field


def next_field(
    module: nn.Module, field: Field, shape_in: Sequence[int], shape_out: Sequence[int]
) -> Field:
    """Return the receptive field of `module`'s output from its input's field and shapes."""
    if len(shape_in) == 4:
        field = _spatial_step(module, field, tuple(shape_in[-2:]), tuple(shape_out[-2:]))
    elif field.extent != (1, 1):
        # Flat features that still stand for a map (a functional flatten): each now sees it all.
        field = field.whole_map()
    if len(shape_out) == 4:
        return field.with_extent(tuple(shape_out[-2:]))
    return field.whole_map()


def leaf_fields(traced: Trace, image: Tensor) -> list[tuple[Call, Field]]:
    """Return each leaf call of a trace of `image` that gave a tensor, with its output's field.

    A tensor made outside any module (a residual sum, torch.flatten) takes the field of the
    last leaf's output: in a residual block that is the main path, not the shortcut.
    """
    latest = Field((1, 1), (1, 1), tuple(image.shape[-2:]))
    # id -> (tensor, field); holding the tensor keeps its id from being reused.
    fields: dict[int, tuple[Tensor, Field]] = {id(image): (image, latest)}
    found = []
    for call in traced.leaves:
        if not isinstance(call.output, Tensor):
            continue
        field = fields.get(id(call.input), (None, latest))[1]
        shape_in = tuple(call.input.shape) if call.input is not None else ()
        latest = next_field(call.module, field, shape_in, tuple(call.output.shape))
        fields[id(call.output)] = (call.output, latest)
        found.append((call, latest))
    return found
