"""The lesson of scripts/explain_conv.py, told: the image, the filters, the output for each
padding, then bias and activation, and what the numbers mean."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from convnet.explain.convolution import Lesson, Matrix, Result, convolve, window


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
