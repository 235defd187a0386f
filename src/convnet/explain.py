"""One convolution worked through by hand: PyTorch (via conv_layer) next to a plain loop.

The lesson of scripts/explain_conv.py: a small image, a few 3x3 filters, the output for each
padding, then bias and activation, and what the numbers mean. The plain-Python loop is the
textbook definition (a cross-correlation, as in every deep-learning library); that it gives
the same numbers as PyTorch is part of the lesson.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from convnet.models.layers import activation_layer, conv_layer

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


def _number(value: float) -> str:
    return str(round(value)) if abs(value - round(value)) < 1e-9 else f"{value:.3g}"


def matrix_panel(matrix: Matrix, title: str) -> Panel:
    """Return a matrix as a small titled box of right-aligned numbers."""
    grid = Table.grid(padding=(0, 1))
    for _ in matrix[0]:
        grid.add_column(justify="right")
    for row in matrix:
        grid.add_row(*map(_number, row))
    return Panel(grid, title=title, expand=False)


def _moments(kernel: Matrix) -> tuple[float, float, float]:
    """Return the sum of the weights and their first moments about the centre (rows, cols)."""
    middle_r, middle_c = (len(kernel) - 1) / 2, (len(kernel[0]) - 1) / 2
    cells = [
        (a - middle_r, b - middle_c, w) for a, row in enumerate(kernel) for b, w in enumerate(row)
    ]
    return (
        sum(w for *_, w in cells),
        sum(r * w for r, _, w in cells),
        sum(c * w for _, c, w in cells),
    )


# What the two filters of the default lesson compute, in words.
FILTER_NOTES = {
    "laplacian": "It is 4 x (the average of the 4 neighbours - the pixel): positive in a dark "
    "pit, negative on a bright peak, 0 where the surface is flat or a steady slope.",
    "diagonal edge": "It is (top-left + bottom-right) - (top-right + bottom-left): it answers "
    "where the two diagonals disagree, at corners and X-shaped crossings.",
}


def filter_meaning(name: str, kernel: Matrix) -> str:
    """Return what a filter responds to, from the sum and balance of its weights."""
    total, rows, cols = _moments(kernel)
    if abs(total) > 1e-12:
        text = (
            f"Its weights sum to {_number(total)}: on a flat patch of value v it gives "
            f"{_number(total)} x v, so it keeps brightness (a blur when the sum is 1)."
        )
    elif abs(rows) > 1e-12 or abs(cols) > 1e-12:
        text = (
            "Its weights sum to 0, so a flat patch gives 0, and they weigh more on one side, "
            "so it measures the slope: an edge detector."
        )
    else:
        text = (
            "Its weights sum to 0 and balance around the centre: a flat patch and a steady "
            "slope (a ramp) both give 0; it answers only where the slope changes."
        )
    return f"{name}: {text} {FILTER_NOTES.get(name, '')}".strip()


def _ramp_steps(image: Matrix) -> tuple[float, float] | None:
    """Return (step down, step right) if the image is a ramp (a plane), else None."""
    down = image[1][0] - image[0][0] if len(image) > 1 else 0.0
    right = image[0][1] - image[0][0] if len(image[0]) > 1 else 0.0
    for r, row in enumerate(image):
        for c, value in enumerate(row):
            if abs(image[0][0] + r * down + c * right - value) > 1e-9:
                return None
    return down, right


def _size_line(lesson: Lesson, result: Result) -> str:
    """Return the output size rule with the lesson's numbers filled in."""
    parts = []
    top, bottom, left, right = result.pads
    sizes = (len(lesson.image), len(lesson.image[0]))
    for axis, size, (before, after), kernel, stride, dilation in zip(
        ("rows", "cols"),
        sizes,
        ((top, bottom), (left, right)),
        lesson.kernel_size,
        lesson.strides,
        lesson.dilation,
        strict=True,
    ):
        span = dilation * (kernel - 1) + 1
        out = (size + before + after - span) // stride + 1
        parts.append(f"{axis}: ({size} + {before} + {after} - {span}) // {stride} + 1 = {out}")
    return "output size = (input + padding - filter span) // stride + 1; " + ", ".join(parts)


def _worked_example(lesson: Lesson, result: Result, position: tuple[int, int]) -> str:
    """Return the sum of products behind one output value of the first filter."""
    name, kernel = next(iter(lesson.filters.items()))
    terms = []
    for weight, pixel in _window_of(lesson, result, kernel, position):
        shown = _number(weight) if weight >= 0 else f"({_number(weight)})"
        terms.append(f"{shown}*{'0' if pixel is None else _number(pixel)}")
    value = result.loop_before[0][position[0]][position[1]] - lesson.bias_of(0)
    return (
        f"{name} at output row {position[0]}, col {position[1]}: {' + '.join(terms)} = "
        f"{_number(value)}; plus bias {_number(lesson.bias_of(0))} gives "
        f"{_number(value + lesson.bias_of(0))}."
    )


def _window_of(
    lesson: Lesson, result: Result, kernel: Matrix, position: tuple[int, int]
) -> Iterator[tuple[float, float | None]]:
    return window(lesson.image, kernel, lesson.strides, lesson.dilation, result.pads, position)


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return _number(low) if low == high else f"{_number(low)} to {_number(high)}"


def border_meaning(lesson: Lesson, result: Result) -> list[str]:
    """Return, per filter, how values on the image differ from those touching padded zeros."""
    lines = []
    for index, name in enumerate(lesson.filters):
        matrix, kernel = result.loop_before[index], lesson.filters[name]
        inside, border = [], []
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                on_image = all(p is not None for _, p in _window_of(lesson, result, kernel, (i, j)))
                (inside if on_image else border).append(value - lesson.bias_of(index))
        text = f"{name}, padding={result.padding}: "
        if inside:
            text += f"the {len(inside)} sums whose window lies on the image are {_span(inside)}"
            balanced = all(abs(m) < 1e-12 for m in _moments(kernel))
            if balanced and _ramp_steps(lesson.image) is not None:
                text += ", as a balanced filter with weights summing to 0 gives on any ramp"
        if border:
            text += (
                f"{'; ' if inside else ''}the {len(border)} whose window covers padded zeros are "
                f"{_span(border)}: to the filter the image seems to drop to 0 at its edge, an "
                "edge the image itself does not have"
            )
        lines.append(text + " (before the bias).")
    return lines


def activation_meaning(lesson: Lesson, results: Sequence[Result]) -> str:
    """Return what the bias and the activation did to the values of every padding."""
    bias = ", ".join(_number(lesson.bias_of(i)) for i in range(len(lesson.filters)))
    text = (
        f"The bias ({bias}) is added to every sum: it moves the level at which the "
        "activation starts to let values through."
    )
    if lesson.activation == "none":
        return f"{text} No activation: the layer stays linear."
    if lesson.activation != "relu":
        return f"{text} {lesson.activation} is applied to every value on its own."
    counts = []
    for result in results:
        values = [v for matrix in result.loop_before for row in matrix for v in row]
        counts.append(
            f"{sum(v < 0 for v in values)} of {len(values)} with padding={result.padding}"
        )
    return (
        f"{text} relu keeps positive values and sets negative ones to 0, here "
        f"{' and '.join(counts)}: a feature map keeps only where a filter's pattern is present."
    )


def _worked_position(result: Result) -> tuple[int, int]:
    # A padded border shows what padding does; without padding, the centre is the clearest.
    if any(result.pads):
        return 0, 0
    matrix = result.loop_before[0]
    return len(matrix) // 2, len(matrix[0]) // 2


def explanation(lesson: Lesson, paddings: Sequence[str | int] = ("valid", "same")) -> Group:
    """Return the whole lesson as rich renderables: inputs, each padding's outputs, meaning."""
    parts: list[RenderableType] = [Rule("The image and the filters")]
    panels = [matrix_panel(kernel, name) for name, kernel in lesson.filters.items()]
    parts.append(Columns([matrix_panel(lesson.image, "image"), *panels]))
    steps = _ramp_steps(lesson.image)
    if steps is not None:
        parts.append(
            Text(
                f"The image is a ramp: each step right adds {_number(steps[1])}, each step down "
                f"adds {_number(steps[0])}. A filter on a ramp answers (sum of weights) x pixel + "
                "(how the weights lean) x slope."
            )
        )
    parts += [Text(filter_meaning(name, kernel)) for name, kernel in lesson.filters.items()]
    parts.append(
        Text(
            "A convolution slides each filter over the image, moving "
            f"{lesson.strides[0]} row(s) down and {lesson.strides[1]} column(s) right at a time "
            "(strides); at each place "
            "it multiplies every weight with the pixel under it and adds the products up"
            + (
                f", the filter's taps {lesson.dilation[0]}x{lesson.dilation[1]} pixels apart "
                "(dilation)."
                if lesson.dilation != (1, 1)
                else "."
            )
        )
    )
    meanings: list[str] = []
    results: list[Result] = []
    for padding in paddings:
        result = convolve(lesson, padding)
        top, bottom, left, right = result.pads
        parts.append(Rule(f"padding={padding}"))
        parts.append(
            Text(
                f"Zeros added: {top} row(s) on top, {bottom} below, {left} column(s) left, "
                f"{right} right. {_size_line(lesson, result)}"
            )
        )
        parts.append(Text(_worked_example(lesson, result, _worked_position(result))))
        act = lesson.activation
        for index, name in enumerate(lesson.filters):
            parts.append(
                Columns(
                    [
                        matrix_panel(result.torch_before[index], f"{name} + bias: torch"),
                        matrix_panel(result.loop_before[index], f"{name} + bias: loop"),
                        matrix_panel(result.torch_after[index], f"{act}: torch"),
                        matrix_panel(result.loop_after[index], f"{act}: loop"),
                    ]
                )
            )
        difference = result.largest_difference
        parts.append(
            Text(
                f"PyTorch (conv_layer) and the plain loop agree: the largest difference is "
                f"{difference:.1e}.",
                style="green" if difference < 1e-9 else "bold red",
            )
        )
        meanings += border_meaning(lesson, result)
        results.append(result)
    parts.append(Rule("What the numbers mean"))
    parts += [Text(f"- {line}") for line in [*meanings, activation_meaning(lesson, results)]]
    return Group(*parts)
