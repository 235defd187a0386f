"""The confusion matrix: counts from torchmetrics, drawn as a labelled picture with counts
in the cells and a colour bar, explained in its description."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torchmetrics.functional.classification import multiclass_confusion_matrix

from convnet.callbacks.render import LINE_HEIGHT, MAX_SIZE, VIRIDIS_TABLE, text_font, text_width

BAR_HEIGHT = 10  # pixels of the colour bar under the matrix
MAX_CELL = (56, 32)  # (width, height) of a cell when there are few classes
MIN_TEXT_CELL = 22  # pixels: cells shorter than this hold no counts and get no labels


def confusion_counts(predicted: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Return the (num_classes, num_classes) int64 counts: row = true, column = predicted."""
    return multiclass_confusion_matrix(predicted, target, num_classes).long()


def compact(count: int) -> str:
    """Return a count in at most four characters: 987, 1.2k, 12k, 123k."""
    if count < 1000:
        return str(count)
    return f"{count / 1000:.1f}k" if count < 10_000 else f"{count // 1000}k"


@dataclass(frozen=True)
class ConfusionLayout:
    """Where the cells of a confusion matrix picture are: `width` x `height` pixels each,
    the first at (left, top), right of the class names and below the column numbers."""

    width: int
    height: int
    left: int
    top: int
    names: bool  # class names by the rows and class numbers over the columns
    numbers: bool  # counts written in the cells

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """Return (x0, y0, x1, y1) of the cell for true class `row`, predicted `column`."""
        x0, y0 = self.left + column * self.width, self.top + row * self.height
        return x0, y0, x0 + self.width, y0 + self.height


def row_labels(classes: Sequence[str]) -> list[str]:
    """Return each row's label: the class name and its number (the column it is)."""
    return [f"{name} {index}" for index, name in enumerate(classes)]


def confusion_layout(classes: Sequence[str], counts: Tensor | None = None) -> ConfusionLayout:
    """Return the layout for a matrix over `classes` within MAX_SIZE: cells shrink as the
    classes grow; names and counts are drawn only where they fit whole."""
    n = len(classes)
    max_width, max_height = MAX_SIZE
    bottom = BAR_HEIGHT + 4 + LINE_HEIGHT  # the colour bar and its ticks
    left = min(160, max(text_width(label) for label in row_labels(classes)) + 8)
    height = min(MAX_CELL[1], (max_height - LINE_HEIGHT - bottom - 4) // n)
    names = height >= MIN_TEXT_CELL and text_width(str(n - 1)) + 4 <= (max_width - left) // n
    if not names:
        left = 4
        height = max(2, min(MAX_CELL[1], (max_height - bottom - 8) // n))
    width = max(2, min(MAX_CELL[0], (max_width - left - 4) // n))
    widest = text_width(compact(int(counts.max()))) if counts is not None and counts.numel() else 0
    numbers = names and widest + 2 <= width
    return ConfusionLayout(width, height, left, LINE_HEIGHT + 2 if names else 4, names, numbers)


def confusion_matrix_picture(counts: Tensor, classes: Sequence[str]) -> Tensor:
    """Return a (3, H, W) picture of `counts` (row = true, column = predicted).

    Each cell's colour is its share of the true class (row-normalised, viridis), so recall
    reads along the diagonal whatever the class sizes; the bar underneath maps colour to
    share. Counts are in the cells, class names by the rows and class numbers over the
    columns, when they fit (see `confusion_layout`).
    """
    counts = counts.detach().cpu().long()
    n = len(classes)
    if counts.shape != (n, n):
        raise ValueError(f"counts {tuple(counts.shape)} do not match {n} classes")
    layout = confusion_layout(classes, counts)
    shares = counts.float() / counts.sum(dim=1, keepdim=True).clamp_min(1)
    colours = (VIRIDIS_TABLE[(shares * 255).round().long()] * 255).round().to(torch.uint8)
    right, bottom = layout.cell_box(n - 1, n - 1)[2:]
    canvas = Image.new("RGB", (right + 4, bottom + BAR_HEIGHT + 6 + LINE_HEIGHT), "white")
    cells = colours.numpy().repeat(layout.height, axis=0).repeat(layout.width, axis=1)
    canvas.paste(Image.fromarray(np.ascontiguousarray(cells)), (layout.left, layout.top))
    draw, font = ImageDraw.Draw(canvas), text_font()
    for row in range(n):
        for column in range(n):
            if layout.numbers and counts[row, column] > 0:
                x0, y0, x1, y1 = layout.cell_box(row, column)
                ink = "black" if shares[row, column] > 0.6 else "white"  # viridis is dark below
                draw.text(((x0 + x1) / 2, (y0 + y1) / 2 + 1), compact(int(counts[row, column])),
                          fill=ink, font=font, anchor="mm")  # fmt: skip
    if layout.names:
        for index, label in enumerate(row_labels(classes)):
            x0, y0, x1, y1 = layout.cell_box(index, index)
            draw.text((layout.left - 4, (y0 + y1) / 2 + 1), label, fill="black", font=font,
                      anchor="rm")  # fmt: skip
            draw.text(((x0 + x1) / 2, layout.top - 2), str(index), fill="black", font=font,
                      anchor="mb")  # fmt: skip
    _draw_colour_bar(canvas, layout.left, right, bottom + 4)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255


def _draw_colour_bar(canvas: Image.Image, left: int, right: int, top: int) -> None:
    ramp = VIRIDIS_TABLE[torch.linspace(0, 255, right - left).round().long()]
    strip = (ramp * 255).round().to(torch.uint8).numpy()[None].repeat(BAR_HEIGHT, axis=0)
    canvas.paste(Image.fromarray(np.ascontiguousarray(strip)), (left, top))
    draw, font, y = ImageDraw.Draw(canvas), text_font(), top + BAR_HEIGHT + 1
    draw.text((left, y), "0%", fill="black", font=font, anchor="lt")
    draw.text(((left + right) / 2, y), "50%", fill="black", font=font, anchor="mt")
    draw.text((right, y), "100%", fill="black", font=font, anchor="rt")


def top_confusions(counts: Tensor, classes: Sequence[str], count: int = 5) -> list[str]:
    """Return the `count` largest off-diagonal cells as "true → predicted: n" (none if 0)."""
    off = counts.detach().cpu().long().clone()
    off.fill_diagonal_(0)
    values, index = off.flatten().topk(min(count, off.numel()))
    n = len(classes)
    return [
        f"{classes[i // n]} → {classes[i % n]}: {v}"
        for v, i in zip(values.tolist(), index.tolist(), strict=True)
        if v > 0
    ]


def confusion_description(counts: Tensor, classes: Sequence[str], source: str) -> str:
    """Return the Markdown that explains the confusion matrix picture of `counts`."""
    layout = confusion_layout(classes, counts)
    total = int(counts.sum())
    correct = int(counts.diagonal().sum())
    parts = [
        f"**Confusion matrix** of {total} {source} images, {correct} right "
        f"({correct / max(total, 1):.1%}). A row per true class, a column per predicted "
        "class, in the same order.",
        "Colour: the cell's share of its row (row-normalised), from dark purple (0%) to "
        "yellow (100%) on the bar underneath, so the diagonal reads as each class's recall "
        "whatever the class sizes, and a dark off-diagonal cell can still hold errors.",
    ]
    if layout.names:
        parts.append(
            "Rows are labelled with the class name and its number; columns with the number."
        )
    else:
        parts.append(f"{len(classes)} classes in label order: too many to name in the cells.")
    parts.append(
        "Numbers: the count in each cell (1.2k = 1,200)."
        if layout.numbers
        else "Cells are too small for counts; the largest confusions are listed below."
    )
    confusions = top_confusions(counts, classes)
    if confusions:
        parts.append("Largest confusions (true → predicted): " + "; ".join(confusions) + ".")
    return "\n\n".join(parts)
