"""Max- and average-pooling layers with Keras' vocabulary (pool_size, strides, padding)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convnet.checks import choose, to_pair
from convnet.models.layers import Pair, same_pads


class SamePadMaxPool2d(nn.MaxPool2d):
    """MaxPool2d whose output is ceil(input / stride), padded like TensorFlow's "same"."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_pads(
            x.shape[-2:],
            to_pair(self.kernel_size, "pool_size"),
            to_pair(self.stride, "strides"),
            to_pair(self.dilation, "dilation"),
        )
        # -inf never wins a max, so padded pixels never reach the output.
        return super().forward(F.pad(x, pads, value=float("-inf")))


class SamePadAvgPool2d(nn.AvgPool2d):
    """AvgPool2d whose output is ceil(input / stride), averaging only real pixels (TensorFlow)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, stride = to_pair(self.kernel_size, "pool_size"), to_pair(self.stride, "strides")
        pads = same_pads(x.shape[-2:], kernel, stride, (1, 1))
        sums = super().forward(F.pad(x, pads))
        # The average of a padded mask of ones is the fraction of each window that is real.
        real = super().forward(F.pad(x.new_ones(1, 1, *x.shape[-2:]), pads))
        return sums / real


# kind -> (plain class, "same" class)
POOLS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "max": (nn.MaxPool2d, SamePadMaxPool2d),
    "avg": (nn.AvgPool2d, SamePadAvgPool2d),
}


def pool_layer(
    kind: str, pool_size: Pair = 2, strides: Pair | None = None, padding: str | Pair = "valid"
) -> nn.Module:
    """Return a max- or average-pooling layer ("max" or "avg").

    strides: None takes pool_size, as in Keras (non-overlapping windows).
    padding: "valid" (none), "same" (output = ceil(input / strides)), or an int/pair of pixels
        on each side, at most half the window (PyTorch's limit).
    """
    plain, same = choose(POOLS, "pool", kind)
    kernel = to_pair(pool_size, "pool_size")
    stride = kernel if strides is None else to_pair(strides, "strides")
    if padding == "same":
        return same(kernel, stride)
    if padding == "valid":
        return plain(kernel, stride)
    if isinstance(padding, str):
        raise ValueError(
            f"padding={padding!r} is not allowed: use 'valid', 'same' or an int/pair of pixels."
        )
    pixels = to_pair(padding, "padding", minimum=0)
    if any(p > k // 2 for p, k in zip(pixels, kernel, strict=True)):
        raise ValueError(
            f"padding={padding!r} is more than half of pool_size={list(kernel)}: PyTorch pads "
            "pools by at most half the window. Use a smaller padding or padding='same'."
        )
    return plain(kernel, stride, pixels)
