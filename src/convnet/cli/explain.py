"""Walk through one convolution: `convnet explain` (or `python scripts/explain_conv.py`).

By default a 5x5 image with values 1..25, the Laplacian and a diagonal-edge filter, padding
valid and same, bias 1 and relu. Every part can be changed:

    convnet explain --image "0 0 0 0; 0 9 9 0; 0 9 9 0; 0 0 0 0" \\
        --filter "sobel: 1 0 -1; 2 0 -2; 1 0 -1" --padding same --stride 2 --activation none

Options are plain command-line flags (argparse), not Hydra: the lesson has no config group
and writes no run directory, matrices read naturally as "0 1 0; 1 -4 1; 0 1 0", and
--help lists every option.
"""

import argparse

from convnet.console import show
from convnet.explain import (
    DIAGONAL_EDGE,
    LAPLACIAN,
    PYTHON_ACTIVATIONS,
    Lesson,
    explanation,
    parse_matrix,
    ramp,
)


def _padding(text: str) -> str | int:
    if text in ("valid", "same"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use valid, same or an int") from None


def _named_filter(text: str) -> tuple[str, str]:
    # "name: rows" or just "rows"; the name is filled in by position later.
    name, _, rows = text.rpartition(":")
    return name.strip(), rows.strip()


def _pair(values: list[int], flag: str) -> tuple[int, int]:
    if len(values) not in (1, 2) or min(values) < 1:
        shown = " ".join(map(str, values))
        raise ValueError(f"{flag} {shown} is not allowed: give one or two ints >= 1 (rows, cols)")
    return (values[0], values[-1])


def main(argv: list[str] | None = None) -> None:
    """Print the lesson of one convolution over the image and filters given."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", help='rows separated by ";" (default: 5x5 with 1..25)')
    parser.add_argument(
        "--filter",
        action="append",
        dest="filters",
        type=_named_filter,
        help='"[name:] rows", repeatable (default: the Laplacian and the diagonal edge)',
    )
    parser.add_argument(
        "--padding", nargs="+", type=_padding, default=["valid", "same"], help="valid, same, int"
    )
    parser.add_argument("--stride", nargs="+", type=int, default=[1], help="rows [cols]")
    parser.add_argument("--dilation", nargs="+", type=int, default=[1], help="rows [cols]")
    parser.add_argument(
        "--bias", nargs="+", type=float, default=[1.0], help="one per filter, or one for all"
    )
    parser.add_argument("--activation", default="relu", choices=list(PYTHON_ACTIVATIONS))
    args = parser.parse_args(argv)

    try:
        image = parse_matrix(args.image, "--image") if args.image else ramp(5, 5)
        if args.filters:
            filters = {
                name or f"filter {i + 1}": parse_matrix(rows, f"--filter {name or i + 1}")
                for i, (name, rows) in enumerate(args.filters)
            }
        else:
            filters = {"laplacian": LAPLACIAN, "diagonal edge": DIAGONAL_EDGE}
        lesson = Lesson(
            image,
            filters,
            strides=_pair(args.stride, "--stride"),
            dilation=_pair(args.dilation, "--dilation"),
            bias=tuple(args.bias),
            activation=args.activation,
        )
        show(explanation(lesson, args.padding))
    except ValueError as error:
        parser.error(str(error))


if __name__ == "__main__":  # python -m convnet.cli.explain (as DDP starts its ranks)
    main()
