"""A layer-by-layer summary of a network: output shapes, parameters, receptive fields, MACs.

One forward pass of a single image on the meta device (shapes only, no compute) with
forward hooks on every leaf module. MACs come from PyTorch's FlopCounterMode (convolutions
and matrix products; norms, activations and pooling count as zero, as in torchvision's
published figures); a multiply-accumulate is two floating-point operations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from omegaconf import DictConfig
from rich import get_console
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convnet.models.layers import to_pair
from convnet.models.resnet_blocks import PadShortcut
from convnet.models.shape_check import meta_state
from convnet.train import build_model

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


@dataclass(frozen=True)
class LayerRow:
    """One call of one leaf module (or a group of them, summarised at a depth)."""

    name: str
    kind: str
    output_shape: tuple[int, ...]  # without the batch
    parameters: int  # counted at a module's first call only
    field: Field
    macs: int  # multiply-accumulates for one image


@dataclass(frozen=True)
class NetworkSummary:
    """Every row of a summary, and the totals for one image of `input_shape`."""

    rows: list[LayerRow]
    input_shape: tuple[int, ...]
    parameters: int
    trainable_parameters: int
    macs: int

    @property
    def flops(self) -> int:
        """Floating-point operations for one image: two per multiply-accumulate."""
        return 2 * self.macs


class _Tracer:
    """Forward hooks that turn each leaf module call into a LayerRow."""

    def __init__(self, image: torch.Tensor, counter: FlopCounterMode) -> None:
        self.counter = counter
        self.latest = Field((1, 1), (1, 1), tuple(image.shape[-2:]))
        # id -> (tensor, field); holding the tensor keeps its id from being reused.
        self.fields: dict[int, tuple[torch.Tensor, Field]] = {id(image): (image, self.latest)}
        self.calls: list[tuple[int, Field, tuple[int, ...]]] = []
        self.counted: set[int] = set()
        self.rows: list[LayerRow] = []

    def before(self, module: nn.Module, args: tuple[object, ...]) -> None:
        x = args[0] if args else None
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else ()
        # A tensor made outside any module (a residual sum, torch.flatten) takes the field of
        # the last module's output: in a residual block that is the main path, not the shortcut.
        field = self.fields.get(id(x), (None, self.latest))[1]
        self.calls.append((self.counter.get_total_flops(), field, shape))

    def after(self, name: str, module: nn.Module, output: object) -> None:
        flops_before, field, shape_in = self.calls.pop()
        if not isinstance(output, torch.Tensor):
            return
        field = next_field(module, field, shape_in, tuple(output.shape))
        self.fields[id(output)] = (output, field)
        self.latest = field
        first_call = id(module) not in self.counted
        self.counted.add(id(module))
        self.rows.append(
            LayerRow(
                name=name or type(module).__name__,
                kind=type(module).__name__,
                output_shape=tuple(output.shape[1:]),
                parameters=sum(p.numel() for p in module.parameters()) if first_call else 0,
                field=field,
                macs=(self.counter.get_total_flops() - flops_before) // 2,
            )
        )


def _trace(model: nn.Module, image: torch.Tensor) -> tuple[list[LayerRow], int]:
    """Return the rows of every leaf module call, and the total MACs of the forward pass."""
    with FlopCounterMode(display=False) as counter:
        tracer = _Tracer(image, counter)
        handles = []
        for name, module in model.named_modules():
            if next(module.children(), None) is None:
                handles.append(module.register_forward_pre_hook(tracer.before))
                handles.append(
                    module.register_forward_hook(
                        lambda m, args, out, name=name: tracer.after(name, m, out)
                    )
                )
        was_training = model.training
        # Eval mode: batch norm in training mode refuses one value per channel.
        model.eval()
        try:
            torch.func.functional_call(model, meta_state(model), (image,))
        finally:
            model.train(was_training)
            for handle in handles:
                handle.remove()
    return tracer.rows, counter.get_total_flops() // 2


def _group(rows: list[LayerRow], model: nn.Module, depth: int) -> list[LayerRow]:
    """Return rows merged by their name's first `depth` parts (consecutive calls only)."""
    groups: list[tuple[str, list[LayerRow]]] = []
    for row in rows:
        key = ".".join(row.name.split(".")[:depth])
        if groups and groups[-1][0] == key:
            groups[-1][1].append(row)
        else:
            groups.append((key, [row]))
    merged = []
    for key, members in groups:
        last = members[-1]
        kind = last.kind if key == last.name else type(model.get_submodule(key)).__name__
        merged.append(
            LayerRow(
                name=key,
                kind=kind,
                output_shape=last.output_shape,
                parameters=sum(row.parameters for row in members),
                field=last.field,
                macs=sum(row.macs for row in members),
            )
        )
    return merged


def summarize(
    model: nn.Module, in_channels: int, image_size: int | Sequence[int], max_depth: int = -1
) -> NetworkSummary:
    """Return the layer-by-layer summary of `model` for one image of `image_size`.

    max_depth: -1 gives a row per leaf module call; n > 0 merges the rows of each module
        at depth n (`layer1.0` at depth 2), summing parameters and MACs.
    The model's weights are not touched: the pass runs on meta copies, in eval mode.
    """
    height, width = to_pair(image_size, "image_size")
    image = torch.empty(1, in_channels, height, width, device="meta")
    rows, macs = _trace(model, image)
    if max_depth > 0:
        rows = _group(rows, model, max_depth)
    start = LayerRow(
        "input", "image", tuple(image.shape[1:]), 0, Field((1, 1), (1, 1), (height, width)), 0
    )
    return NetworkSummary(
        rows=[start, *rows],
        input_shape=tuple(image.shape[1:]),
        parameters=sum(p.numel() for p in model.parameters()),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        macs=macs,
    )


def _human(count: int) -> str:
    """Return a count with a metric suffix and three significant digits (1.81G)."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= factor:
            return f"{count / factor:.3g}{suffix}"
    return str(count)


def _pair_text(pair: Sequence[int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def summary_table(summary: NetworkSummary, title: str | None = None) -> Table:
    """Return the summary as a rich table, with a totals row and the FLOPs in the caption."""
    shape = "x".join(map(str, summary.input_shape))
    table = Table(
        title=title,
        caption=(
            f"{summary.parameters:,} parameters ({_human(summary.parameters)}); for one "
            f"{shape} image {_human(summary.macs)} MACs = {_human(summary.flops)} FLOPs. "
            "Receptive field and jump in input pixels."
        ),
    )
    table.add_column("layer")
    table.add_column("kind")
    table.add_column("output shape", justify="right")
    table.add_column("params", justify="right")
    table.add_column("receptive field", justify="right")
    table.add_column("jump", justify="right")
    table.add_column("MACs", justify="right")
    for row in summary.rows:
        table.add_row(
            row.name,
            row.kind,
            "x".join(map(str, row.output_shape)),
            f"{row.parameters:,}" if row.parameters else "",
            _pair_text(row.field.size),
            _pair_text(row.field.jump),
            _human(row.macs) if row.macs else "",
        )
    table.add_section()
    table.add_row("total", "", "", f"{summary.parameters:,}", "", "", _human(summary.macs))
    table.add_row("FLOPs = 2 x MACs", "", "", "", "", "", _human(summary.flops))
    return table


def draw(table: Table, console: Console | None = None) -> None:
    """Draw `table` on the console at its natural width, so no layer name is clipped."""
    console = console or get_console()
    # Measured without the console's own width limit: the table's widest natural layout.
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    if natural > console.width:
        # Console.print never goes wider than its console, so a wider one takes this table.
        console = Console(
            file=console.file,
            width=natural,
            color_system=console.color_system,
            force_terminal=console.is_terminal,
        )
    console.print(table)


def summarize_config(cfg: DictConfig, max_depth: int = -1) -> NetworkSummary:
    """Return the summary of the network a run config describes, for its data's image size.

    The network is built on the meta device: no weights are allocated or initialised.
    """
    with torch.device("meta"):
        model = build_model(cfg.model)
    return summarize(model, cfg.data.in_channels, cfg.data.image_size, max_depth)
