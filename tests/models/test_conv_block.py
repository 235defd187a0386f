"""conv_block: output sizes, padding arithmetic, layer order and argument errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convnet.models import SamePadConv2d, conv_block

pairs = st.tuples(st.integers(1, 5), st.integers(1, 5))

# PyTorch warns that its own padding="same" copies the input for even kernels; expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def expected_size(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """Keras/TensorFlow's output size rules."""
    if padding == "same":
        return math.ceil(size / stride)
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def reference_conv(
    image: list[list[float]],
    kernel: list[list[float]],
    stride: tuple[int, int],
    dilation: int,
    padding: str,
) -> list[list[float]]:
    """Plain-Python single-channel convolution (cross-correlation) with Keras padding."""
    rows, cols = len(image), len(image[0])
    krows, kcols = len(kernel), len(kernel[0])
    out_rows = expected_size(rows, krows, stride[0], dilation, padding)
    out_cols = expected_size(cols, kcols, stride[1], dilation, padding)
    top = left = 0
    if padding == "same":
        # TensorFlow: pad just enough for ceil(n / s) outputs, the odd pixel at the bottom/right.
        top = max((out_rows - 1) * stride[0] + (krows - 1) * dilation + 1 - rows, 0) // 2
        left = max((out_cols - 1) * stride[1] + (kcols - 1) * dilation + 1 - cols, 0) // 2
    out = []
    for i in range(out_rows):
        row = []
        for j in range(out_cols):
            total = 0.0
            for a in range(krows):
                for b in range(kcols):
                    r = i * stride[0] - top + a * dilation
                    c = j * stride[1] - left + b * dilation
                    if 0 <= r < rows and 0 <= c < cols:
                        total += image[r][c] * kernel[a][b]
            row.append(total)
        out.append(row)
    return out


def bare_conv(kernel_size, strides, padding, dilation=1) -> nn.Sequential:
    return conv_block(
        1,
        1,
        kernel_size,
        strides,
        padding,
        dilation,
        norm="none",
        activation="none",
        use_bias=False,
    )


@settings(max_examples=60, deadline=None)
@given(
    size=st.tuples(st.integers(1, 24), st.integers(1, 24)),
    kernel=pairs,
    stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    dilation=st.integers(1, 3),
    padding=st.sampled_from(["same", "valid"]),
)
def test_output_size_follows_keras_rules(size, kernel, stride, dilation, padding):
    if padding == "valid" and any(
        n < dilation * (k - 1) + 1 for n, k in zip(size, kernel, strict=True)
    ):
        return  # Keras refuses these too: the kernel does not fit.
    block = bare_conv(kernel, stride, padding, dilation)
    out = block(torch.zeros(1, 1, *size))
    assert tuple(out.shape[-2:]) == tuple(
        expected_size(n, k, s, dilation, padding)
        for n, k, s in zip(size, kernel, stride, strict=True)
    )


@settings(max_examples=30, deadline=None)
@given(
    size=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    kernel=pairs,
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_same_padding_values_match_tensorflow_reference(size, kernel, stride, dilation, seed):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(1, 1, *size, generator=generator)
    block = bare_conv(kernel, stride, "same", dilation)
    weight = block[0].weight.detach()[0, 0]
    expected = reference_conv(image[0, 0].tolist(), weight.tolist(), stride, dilation, "same")
    torch.testing.assert_close(block(image)[0, 0], torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_same_padding_with_even_kernel_and_stride_two_by_hand():
    # 3x3 image 0..8, 2x2 ones, stride 2: outputs 2x2, one zero row/column at bottom/right.
    block = bare_conv(2, 2, "same")
    nn.init.ones_(block[0].weight)
    image = torch.arange(9.0).reshape(1, 1, 3, 3)
    expected = torch.tensor([[0 + 1 + 3 + 4, 2 + 5], [6 + 7, 8.0]])
    torch.testing.assert_close(block(image)[0, 0], expected)


def test_same_padding_keeps_size_for_stride_one():
    for kernel in (1, 2, 3, 4, 5):
        out = bare_conv(kernel, 1, "same")(torch.zeros(1, 1, 7, 6))
        assert out.shape[-2:] == (7, 6)


def test_same_padding_uses_plain_conv_at_stride_one_and_same_pad_conv_when_strided():
    assert bare_conv(3, 1, "same")[0].padding == (1, 1)
    assert type(bare_conv(2, 1, "same")[0]) is nn.Conv2d
    assert isinstance(bare_conv(3, 2, "same")[0], SamePadConv2d)


def test_integer_padding_is_added_on_each_side():
    out = bare_conv(3, 2, 2)(torch.zeros(1, 1, 9, 9))
    assert out.shape[-2:] == ((9 + 4 - 3) // 2 + 1,) * 2


def test_block_order_is_conv_norm_activation_dropout():
    block = conv_block(3, 8, norm="group", activation="gelu", dropout=0.1)
    assert [type(m) for m in block] == [nn.Conv2d, nn.GroupNorm, nn.GELU, nn.Dropout]
    assert block[1].num_groups == 8


def test_unused_parts_are_left_out():
    block = conv_block(3, 8, norm="none", activation="none")
    assert len(block) == 1


def test_bias_only_without_norm_by_default():
    assert conv_block(3, 8, norm="batch")[0].bias is None
    assert conv_block(3, 8, norm="none")[0].bias is not None
    assert conv_block(3, 8, norm="batch", use_bias=True)[0].bias is not None


def test_layer_norm_is_one_group_and_group_norm_divides_channels():
    assert conv_block(3, 48, norm="layer")[1].num_groups == 1
    assert conv_block(3, 48, norm="group")[1].num_groups == 24
    assert conv_block(3, 64, norm="group")[1].num_groups == 32


@pytest.mark.parametrize(
    "initializer",
    ["kaiming_normal", "he_uniform", "glorot_normal", "xavier_uniform", "orthogonal", "default"],
)
def test_every_initializer_builds(initializer):
    conv = conv_block(4, 8, kernel_initializer=initializer, norm="none")[0]
    assert conv.weight.std() > 0


def test_dirac_initializer_passes_images_through():
    block = conv_block(4, 4, kernel_initializer="dirac", norm="none", activation="none")
    image = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(block(image), image)


def test_grouped_conv_has_fewer_weights():
    conv = conv_block(8, 16, groups=4)[0]
    assert conv.weight.shape == (16, 2, 3, 3)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"activation": "swish"}, ["activation", "'swish'", "relu"]),
        ({"norm": "instance"}, ["norm", "'instance'", "batch"]),
        ({"kernel_initializer": "lecun"}, ["kernel_initializer", "'lecun'", "orthogonal"]),
        ({"padding": "full"}, ["padding", "'full'", "same", "valid"]),
        ({"padding": -1}, ["padding", "-1"]),
        ({"filters": 0}, ["filters", "0"]),
        ({"in_channels": -3}, ["in_channels", "-3"]),
        ({"kernel_size": 0}, ["kernel_size", "0"]),
        ({"strides": [1, 0]}, ["strides", "[1, 0]"]),
        ({"dilation": [1, 2, 3]}, ["dilation", "[1, 2, 3]"]),
        ({"in_channels": 6, "groups": 3}, ["filters", "8", "groups=3"]),
        ({"in_channels": 6, "groups": 4}, ["in_channels", "6", "groups=4"]),
        ({"dropout": 1.0}, ["dropout", "1.0"]),
    ],
)
def test_invalid_argument_error_names_key_and_value(arguments, named):
    kwargs = {"in_channels": 4, "filters": 8, **arguments}
    with pytest.raises(ValueError) as error:
        conv_block(**kwargs)
    for text in named:
        assert text in str(error.value)
