"""The confusion matrix: counts from torchmetrics, drawn as a labelled picture."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torchmetrics.functional.classification import multiclass_confusion_matrix

from convnet.callbacks.render import FONT_SIZE, VIRIDIS_TABLE, add_caption, text_font

MAX_SIDE = 640  # pixels of the matrix itself, whatever the number of classes


def confusion_counts(predicted: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Return the (num_classes, num_classes) int64 counts: row = true, column = predicted."""
    return multiclass_confusion_matrix(predicted, target, num_classes).long()


@dataclass(frozen=True)
class ConfusionLayout:
    """Where the cells of a confusion matrix picture are: `cell` pixels each, the first
    at (left, top) below the caption-less matrix's class-name margins."""

    cell: int
    left: int
    top: int
    names: bool  # class names drawn (only when cells are tall enough for text)
    numbers: bool  # counts written in the cells

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """Return (x0, y0, x1, y1) of the cell for true class `row`, predicted `column`."""
        x0, y0 = self.left + column * self.cell, self.top + row * self.cell
        return x0, y0, x0 + self.cell, y0 + self.cell


def confusion_layout(classes: Sequence[str]) -> ConfusionLayout:
    """Return the layout for a matrix over `classes` (cells shrink as classes grow)."""
    cell = max(4, min(40, MAX_SIDE // len(classes)))
    names = cell >= 10
    margin = int(max(text_font(FONT_SIZE).getlength(n) for n in classes)) + 6 if names else 4
    return ConfusionLayout(cell, margin, margin, names, numbers=cell >= 22)


def confusion_matrix_picture(counts: Tensor, classes: Sequence[str], title: str = "") -> Tensor:
    """Return a (3, H, W) picture of `counts` (row = true, column = predicted).

    Each cell's colour is its share of the true class (row-normalised, viridis), so
    recall reads along the diagonal whatever the class sizes; counts are written in the
    cells and class names along the axes when there is room.
    """
    counts = counts.detach().cpu().long()
    if counts.shape != (len(classes), len(classes)):
        raise ValueError(f"counts {tuple(counts.shape)} do not match {len(classes)} classes")
    layout = confusion_layout(classes)
    shares = counts.float() / counts.sum(dim=1, keepdim=True).clamp_min(1)
    colours = (VIRIDIS_TABLE[(shares * 255).round().long()] * 255).round().to(torch.uint8)
    side = layout.cell * len(classes)
    canvas = Image.new("RGB", (layout.left + side + 2, layout.top + side + 2), "white")
    cells = colours.numpy().repeat(layout.cell, axis=0).repeat(layout.cell, axis=1)
    canvas.paste(Image.fromarray(np.ascontiguousarray(cells)), (layout.left, layout.top))
    draw, font = ImageDraw.Draw(canvas), text_font(FONT_SIZE)
    for row in range(len(classes)):
        for column in range(len(classes)):
            if layout.numbers and counts[row, column] > 0:
                x0, y0, x1, y1 = layout.cell_box(row, column)
                ink = "black" if shares[row, column] > 0.6 else "white"  # viridis is dark below
                draw.text(((x0 + x1) / 2, (y0 + y1) / 2), str(int(counts[row, column])),
                          fill=ink, font=font, anchor="mm")  # fmt: skip
    if layout.names:
        _draw_names(canvas, classes, layout)
    picture = torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255
    caption = "rows: true class, columns: predicted; colour = share of the true class (viridis)"
    caption += "; numbers = counts" if layout.numbers else ""
    caption += "" if layout.names else "; classes in label order"
    return add_caption(picture, f"{title}\n{caption}" if title else caption)


def _draw_names(canvas: Image.Image, classes: Sequence[str], layout: ConfusionLayout) -> None:
    draw, font = ImageDraw.Draw(canvas), text_font(FONT_SIZE)
    for index, name in enumerate(classes):
        _, y0, _, y1 = layout.cell_box(index, 0)
        draw.text((layout.left - 3, (y0 + y1) / 2), name, fill="black", font=font, anchor="rm")
    # Column names are written sideways: drawn on their own strip, then turned.
    strip = Image.new("RGB", (layout.top, canvas.width), "white")
    strip_draw = ImageDraw.Draw(strip)
    for index, name in enumerate(classes):
        x0, _, x1, _ = layout.cell_box(0, index)
        strip_draw.text((3, (x0 + x1) / 2), name, fill="black", font=font, anchor="lm")
    # A quarter turn anticlockwise: names read upwards, starting next to the matrix.
    canvas.paste(strip.rotate(90, expand=True), (0, 0))
