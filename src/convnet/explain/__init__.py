"""One convolution worked through by hand: PyTorch (via conv_layer) next to a plain loop.

The lesson of scripts/explain_conv.py: a small image, a few 3x3 filters, the output for each
padding, then bias and activation, and what the numbers mean. `convolution` computes it
both ways; `story` tells it.
"""

from convnet.explain.convolution import (
    DIAGONAL_EDGE,
    LAPLACIAN,
    PYTHON_ACTIVATIONS,
    Lesson,
    Matrix,
    Result,
    convolve,
    loop_conv2d,
    pads_for,
    parse_matrix,
    ramp,
    torch_conv2d,
    window,
)
from convnet.explain.story import explanation, filter_meaning

__all__ = [
    "DIAGONAL_EDGE",
    "LAPLACIAN",
    "PYTHON_ACTIVATIONS",
    "Lesson",
    "Matrix",
    "Result",
    "convolve",
    "explanation",
    "filter_meaning",
    "loop_conv2d",
    "pads_for",
    "parse_matrix",
    "ramp",
    "torch_conv2d",
    "window",
]
