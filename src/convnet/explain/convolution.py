"""One convolution computed twice: by PyTorch (via conv_layer) and by a plain loop.

The plain-Python loop is the textbook definition (a cross-correlation, as in every
deep-learning library); that it gives the same numbers as PyTorch is part of the lesson
that convnet.explain.story tells.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

Matrix = list[list[float]]
Pads = tuple[int, int, int, int]  # top, bottom, left, right

LAPLACIAN: Matrix = [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
DIAGONAL_EDGE: Matrix = [[1, 0, -1], [0, 0, 0], [-1, 0, 1]]

# The same functions as convnet.models.layers.ACTIVATIONS, one number at a time.
PYTHON_ACTIVATIONS: dict[str, Callable[[float], float]] = {
    "relu": lambda v: max(v, 0.0),
    "leaky_relu": lambda v: v if v >= 0 else 0.01 * v,  # PyTorch's default slope
    "elu": lambda v: v if v > 0 else math.expm1(v),
    "tanh": math.tanh,
    "silu": lambda v: v / (1 + math.exp(-v)) if v >= 0 else v * math.exp(v) / (1 + math.exp(v)),
    "gelu": lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))),
    "none": lambda v: v,
}


def ramp(rows: int, cols: int) -> Matrix:
    """Return the image with values 1, 2, ..., rows * cols, row by row."""
    return [[float(r * cols + c + 1) for c in range(cols)] for r in range(rows)]


def parse_matrix(text: str, name: str) -> Matrix:
    """Return the matrix written as rows separated by ';', numbers by spaces or commas.

    "0 1 0; 1 -4 1; 0 1 0" is the 3x3 Laplacian.
    """
    try:
        rows = [[float(v) for v in row.replace(",", " ").split()] for row in text.split(";")]
    except ValueError as error:
        raise ValueError(f"{name}={text!r} is not a matrix of numbers: {error}.") from None
    if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        raise ValueError(
            f"{name}={text!r} is not allowed: give rows of equal length separated by ';', "
            "e.g. '0 1 0; 1 -4 1; 0 1 0'."
        )
    return rows


@dataclass(frozen=True)
class Lesson:
    """Everything one explanation is about: the image, named filters and the conv's settings."""

    image: Matrix
    filters: dict[str, Matrix]
    strides: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    bias: tuple[float, ...] = (1.0,)
    activation: str = "relu"

    def __post_init__(self) -> None:
        shapes = {(len(f), len(f[0])) for f in self.filters.values()}
        if len(shapes) != 1:
            raise ValueError(
                f"filters of sizes {sorted(shapes)}: the filters of one conv layer share one "
                "kernel size; give filters of equal size."
            )
        if len(self.bias) not in (1, len(self.filters)):
            raise ValueError(
                f"bias={list(self.bias)} is not allowed: give one value for every filter "
                f"({len(self.filters)}) or one for all."
            )
        if self.activation not in PYTHON_ACTIVATIONS:
            raise ValueError(
                f"activation={self.activation!r} is not allowed: choose one of "
                f"{', '.join(PYTHON_ACTIVATIONS)}."
            )

    @property
    def kernel_size(self) -> tuple[int, int]:
        """(rows, cols) of every filter."""
        first = next(iter(self.filters.values()))
        return len(first), len(first[0])

    def bias_of(self, index: int) -> float:
        """Return the bias of filter `index` (one shared value or one per filter)."""
        return self.bias[index if len(self.bias) > 1 else 0]


def pads_for(lesson: Lesson, padding: str | int) -> Pads:
    """Return (top, bottom, left, right) zero rows/columns for "valid", "same" or an int.

    "same" follows TensorFlow: just enough for ceil(size / stride) outputs, any odd pixel at
    the bottom/right.
    """
    if padding == "valid":
        return 0, 0, 0, 0
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return padding, padding, padding, padding
    if padding != "same":
        raise ValueError(f"padding={padding!r} is not allowed: use valid, same or an int >= 0.")
    sides = []
    sizes = (len(lesson.image), len(lesson.image[0]))
    for size, kernel, stride, dilation in zip(
        sizes, lesson.kernel_size, lesson.strides, lesson.dilation, strict=True
    ):
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
        sides += [total // 2, total - total // 2]
    return sides[0], sides[1], sides[2], sides[3]


def window(
    image: Matrix,
    kernel: Matrix,
    strides: Sequence[int],
    dilation: Sequence[int],
    pads: Pads,
    position: tuple[int, int],
) -> Iterator[tuple[float, float | None]]:
    """Yield (weight, pixel under it) for the output at `position`; None over padding."""
    top, _, left, _ = pads
    for a, kernel_row in enumerate(kernel):
        for b, weight in enumerate(kernel_row):
            r = position[0] * strides[0] + a * dilation[0] - top
            c = position[1] * strides[1] + b * dilation[1] - left
            inside = 0 <= r < len(image) and 0 <= c < len(image[0])
            yield weight, image[r][c] if inside else None


def loop_conv2d(
    image: Matrix,
    kernel: Matrix,
    strides: Sequence[int],
    dilation: Sequence[int],
    pads: Pads,
    bias: float,
) -> Matrix:
    """Return bias + the sum of kernel * window at every window position, by plain loops."""
    top, bottom, left, right = pads
    rows, cols = len(image), len(image[0])
    span_r, span_c = dilation[0] * (len(kernel) - 1) + 1, dilation[1] * (len(kernel[0]) - 1) + 1
    out_rows = (rows + top + bottom - span_r) // strides[0] + 1
    out_cols = (cols + left + right - span_c) // strides[1] + 1
    if out_rows < 1 or out_cols < 1:
        raise ValueError(
            f"a {len(kernel)}x{len(kernel[0])} filter with dilation {list(dilation)} spans "
            f"{span_r}x{span_c} pixels, more than the padded {rows + top + bottom}x"
            f"{cols + left + right} image: use padding=same, a smaller filter or a larger image."
        )
    output = []
    for i in range(out_rows):
        row = []
        for j in range(out_cols):
            total = bias
            for weight, pixel in window(image, kernel, strides, dilation, pads, (i, j)):
                if pixel is not None:  # padding is zero and adds nothing
                    total += weight * pixel
            row.append(total)
        output.append(row)
    return output


def torch_conv2d(lesson: Lesson, padding: str | int) -> tuple[list[Matrix], list[Matrix]]:
    """Return (conv + bias, after the activation) per filter, computed by conv_layer."""
    # torch only here: `convnet explain --help` and the loop answer without importing it.
    import torch

    from convnet.models.layers import activation_layer, conv_layer

    names = list(lesson.filters)
    conv = conv_layer(
        1,
        len(names),
        lesson.kernel_size,
        lesson.strides,
        padding,
        lesson.dilation,
        use_bias=True,
        kernel_initializer="default",
    ).double()
    with torch.no_grad():
        # (filters, 1 input channel, kernel rows, kernel cols)
        weights = torch.tensor([lesson.filters[n] for n in names], dtype=torch.float64)
        conv.weight.copy_(weights.unsqueeze(1))
        conv.bias.copy_(
            torch.tensor([lesson.bias_of(i) for i in range(len(names))], dtype=torch.float64)
        )
        image = torch.tensor(lesson.image, dtype=torch.float64)[None, None]  # (1, 1, H, W)
        before = conv(image)[0]  # (filters, H', W')
        after = activation_layer(lesson.activation)(before)
    return before.tolist(), after.tolist()


@dataclass(frozen=True)
class Result:
    """One padding's outputs, per filter, from PyTorch and from the loop."""

    padding: str | int
    pads: Pads
    torch_before: list[Matrix]
    torch_after: list[Matrix]
    loop_before: list[Matrix]
    loop_after: list[Matrix]

    @property
    def largest_difference(self) -> float:
        """The largest |torch - loop| over every value, before and after the activation."""
        pairs = zip(
            self.torch_before + self.torch_after, self.loop_before + self.loop_after, strict=True
        )
        return max(
            abs(t - p)
            for torch_matrix, loop_matrix in pairs
            for torch_row, loop_row in zip(torch_matrix, loop_matrix, strict=True)
            for t, p in zip(torch_row, loop_row, strict=True)
        )


def convolve(lesson: Lesson, padding: str | int) -> Result:
    """Return the lesson's convolution with `padding`, by PyTorch and by the loop."""
    pads = pads_for(lesson, padding)
    activate = PYTHON_ACTIVATIONS[lesson.activation]
    loop_before = [
        loop_conv2d(lesson.image, kernel, lesson.strides, lesson.dilation, pads, lesson.bias_of(i))
        for i, kernel in enumerate(lesson.filters.values())
    ]
    loop_after = [[[activate(v) for v in row] for row in matrix] for matrix in loop_before]
    torch_before, torch_after = torch_conv2d(lesson, padding)
    return Result(padding, pads, torch_before, torch_after, loop_before, loop_after)
