"""explain_conv: PyTorch's convolution and the plain loop agree, on hand-known values."""

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from scripts.explain_conv import main as explain_main

from convnet.explain import (
    DIAGONAL_EDGE,
    LAPLACIAN,
    PYTHON_ACTIVATIONS,
    Lesson,
    convolve,
    explanation,
    filter_meaning,
    parse_matrix,
    ramp,
)
from convnet.models.layers import ACTIVATIONS
from tests.compose import REPO
from tests.scripts import run_script

# PyTorch warns that its own padding="same" copies the input for even kernels; expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

DEFAULT = Lesson(ramp(5, 5), {"laplacian": LAPLACIAN, "diagonal edge": DIAGONAL_EDGE}, bias=(0.0,))


def test_valid_gives_3x3_and_both_filters_see_nothing_inside_a_ramp():
    result = convolve(DEFAULT, "valid")
    assert result.largest_difference == 0
    # 1..25 rises by 1 per column and 5 per row: no curvature, so both filters give 0.
    assert result.torch_before == [[[0.0] * 3] * 3] * 2
    assert result.loop_before == result.torch_before


def test_same_keeps_5x5_and_the_border_sees_the_padded_zeros():
    result = convolve(DEFAULT, "same")
    laplacian, diagonal = result.loop_before
    assert result.pads == (1, 1, 1, 1)
    assert laplacian[2][2] == 0  # 8 + 12 + 14 + 18 - 4 * 13
    assert laplacian[0][0] == 4  # 2 + 6 - 4 * 1, the zeros above and left add nothing
    assert laplacian[4][4] == -56  # 20 + 24 - 4 * 25
    assert diagonal[0][0] == 7  # only the bottom-right weight lands on the image: 1 * 7
    assert diagonal[4][4] == 19  # only the top-left weight does: 1 * 19
    assert result.torch_before == result.loop_before


def test_bias_and_relu_are_applied_after_the_sum():
    lesson = Lesson(ramp(5, 5), {"laplacian": LAPLACIAN}, bias=(1.0,), activation="relu")
    result = convolve(lesson, "same")
    assert result.torch_before[0][0][0] == 5 and result.torch_after[0][0][0] == 5
    assert result.torch_before[0][4][4] == -55 and result.torch_after[0][4][4] == 0
    assert result.largest_difference == 0


matrices = st.integers(1, 7).flatmap(
    lambda rows: st.integers(1, 7).flatmap(
        lambda cols: st.lists(
            st.lists(st.integers(-9, 9).map(float), min_size=cols, max_size=cols),
            min_size=rows,
            max_size=rows,
        )
    )
)


@settings(max_examples=30, deadline=None)
@given(
    image=matrices,
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.sampled_from(["same", "valid", 0, 1, 2]),
    bias=st.floats(-2, 2),
    activation=st.sampled_from(list(PYTHON_ACTIVATIONS)),
)
def test_torch_and_the_loop_agree_on_random_convolutions(
    image, kernel, strides, dilation, padding, bias, activation
):
    weights = [[float((r * 3 + c) % 5 - 2) for c in range(kernel[1])] for r in range(kernel[0])]
    lesson = Lesson(image, {"w": weights}, strides, dilation, (bias,), activation)
    try:
        result = convolve(lesson, padding)
    except ValueError as error:  # the filter spans more than the padded image
        assert "spans" in str(error)
        return
    assert result.largest_difference < 1e-9


def test_python_activations_match_the_layers_ones():
    assert set(PYTHON_ACTIVATIONS) == set(ACTIVATIONS)
    values = torch.linspace(-3, 3, 13, dtype=torch.float64)
    for name, function in PYTHON_ACTIVATIONS.items():
        expected = ACTIVATIONS[name]()(values).tolist()
        assert [function(v) for v in values.tolist()] == pytest.approx(expected, abs=1e-12)


def test_matrices_parse_from_text_and_bad_ones_are_named():
    assert parse_matrix("0 1 0; 1 -4 1; 0 1 0", "--filter") == LAPLACIAN
    assert parse_matrix("1,2;3,4", "--image") == [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match="--image='1 2; 3'"):
        parse_matrix("1 2; 3", "--image")
    with pytest.raises(ValueError, match="not a matrix of numbers"):
        parse_matrix("1 x", "--image")


def test_lesson_refuses_mixed_filter_sizes_and_bias_counts():
    with pytest.raises(ValueError, match="kernel size"):
        Lesson(ramp(3, 3), {"a": [[1.0]], "b": LAPLACIAN})
    with pytest.raises(ValueError, match="bias="):
        Lesson(ramp(3, 3), {"a": [[1.0]]}, bias=(1.0, 2.0))


def test_filter_meaning_tells_curvature_from_edges_and_blurs():
    assert "only where the slope changes" in filter_meaning("laplacian", LAPLACIAN)
    assert "edge detector" in filter_meaning("sobel", [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    assert "sum to 1" in filter_meaning("box", [[1 / 9] * 3] * 3)


def test_explanation_shows_both_paddings_and_the_agreement():
    console = Console(width=160, record=True)
    console.print(explanation(DEFAULT))
    text = console.export_text()
    assert "padding=valid" in text and "padding=same" in text
    assert text.count("the largest difference is 0.0e+00") == 2
    assert "-4)*13" in text  # the worked sum at the centre


def test_options_change_the_lesson(capsys):
    explain_main(["--image", "1 2 3 4; 5 6 7 8", "--filter", "sobel: 1 0 -1", "--stride", "2",
                  "--padding", "same", "--activation", "none"])  # fmt: skip
    out = capsys.readouterr().out
    assert "sobel" in out and "padding=same" in out and "valid" not in out
    assert "0.0e+00" in out


def test_the_script_runs_as_a_command(tmp_path: Path) -> None:
    result = run_script([REPO / "scripts" / "explain_conv.py"], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "laplacian" in result.stdout and "What the numbers mean" in result.stdout
