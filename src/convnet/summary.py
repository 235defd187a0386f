"""A layer-by-layer summary of a network: output shapes, parameters, receptive fields, MACs.

One traced forward pass of a single image on the meta device (shapes only, no compute, see
convnet.models.trace). MACs come from PyTorch's FlopCounterMode (convolutions and matrix
products; norms, activations and pooling count as zero, as in torchvision's published
figures); a multiply-accumulate is two floating-point operations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from rich.table import Table
from torch import nn

from convnet.checks import to_pair
from convnet.models.fields import Field, leaf_fields
from convnet.models.trace import trace


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


def _trace(model: nn.Module, image: torch.Tensor) -> tuple[list[LayerRow], int]:
    """Return the rows of every leaf module call, and the total MACs of the forward pass."""
    traced = trace(model, image, count_flops=True)
    if traced.error is not None:
        raise traced.error
    rows, counted = [], set()
    for call, field in leaf_fields(traced, image):
        first_call = id(call.module) not in counted
        counted.add(id(call.module))
        rows.append(
            LayerRow(
                name=call.name or type(call.module).__name__,
                kind=type(call.module).__name__,
                output_shape=tuple(call.output.shape[1:]),
                parameters=sum(p.numel() for p in call.module.parameters()) if first_call else 0,
                field=field,
                macs=call.flops // 2,
            )
        )
    return rows, traced.flops // 2


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
    Raises the model's own error when it cannot take images of `image_size`.
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


@dataclass(frozen=True)
class StageColumns:
    """What the table says of one stage, on the row of its output: its name, and its filter
    health (convnet.callbacks.health) when measured: the share of its channels never
    active on the fixed validation images and std / mean of its first conv's filter norms."""

    stage: str
    dead: float | None = None
    norm_spread: float | None = None


def stage_rows(
    rows: Sequence[LayerRow], outputs: Mapping[str, StageColumns]
) -> dict[str, StageColumns]:
    """Return {row name: StageColumns} for the stage outputs `outputs` (by module name): the
    last row that is the output module, inside it, or the group holding it."""
    found = {}
    for module, columns in outputs.items():
        matching = [
            row.name for row in rows if _holds(row.name, module) or _holds(module, row.name)
        ]
        if matching:
            found[matching[-1]] = columns
    return found


def _holds(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(f"{outer}.")


def summary_table(
    summary: NetworkSummary,
    title: str | None = None,
    stages: Mapping[str, StageColumns] | None = None,
) -> Table:
    """Return the summary as a rich table, with a totals row and the FLOPs in the caption.

    stages: {stage output module: StageColumns}; adds the columns stage, dead (the share of
        channels never active on the fixed validation images) and norm spread, on each
        stage's last row.
    """
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
    by_row = stage_rows(summary.rows, stages or {})
    if stages:
        table.add_column("stage")
        table.add_column("dead", justify="right")
        table.add_column("norm spread", justify="right")
    for row in summary.rows:
        cells = [
            row.name,
            row.kind,
            "x".join(map(str, row.output_shape)),
            f"{row.parameters:,}" if row.parameters else "",
            _pair_text(row.field.size),
            _pair_text(row.field.jump),
            _human(row.macs) if row.macs else "",
        ]
        if stages:
            cells += _stage_cells(by_row.get(row.name))
        table.add_row(*cells)
    table.add_section()
    extra = ["", "", ""] if stages else []
    table.add_row("total", "", "", f"{summary.parameters:,}", "", "", _human(summary.macs), *extra)
    table.add_row("FLOPs = 2 x MACs", "", "", "", "", "", _human(summary.flops), *extra)
    return table


def _stage_cells(columns: StageColumns | None) -> list[str]:
    if columns is None:
        return ["", "", ""]
    dead = "" if columns.dead is None else f"{100 * columns.dead:.0f}%"
    spread = "" if columns.norm_spread is None else f"{columns.norm_spread:.3f}"
    return [columns.stage, dead, spread]
