"""What the training device does fast: bf16 in hardware, and the memory format of convolutions.

`precision: auto` and `memory_format: auto` resolve here, per device. On a CUDA GPU with
bf16, and on a CPU with bf16 in hardware (AMX-BF16 or AVX512_BF16, as on Intel Xeons from
Sapphire Rapids on), training runs in bf16 autocast with channels_last; elsewhere in fp32.
Autocast keeps what is numerically delicate in fp32 on the CPU as on CUDA: the weights,
their gradients and the optimizer state, batch-norm statistics, the loss and the metrics.

Measured on 2 Sapphire Rapids cores (oneDNN runs bf16 convolutions on AMX), a plain PyTorch
step of ResNet-20 at batch 128, 32x32, SGD: NCHW fp32 260 ms, channels_last fp32 209 ms,
NCHW bf16 138 ms, channels_last bf16 112 ms (2.3x fp32 NCHW).
"""

from __future__ import annotations

import logging

import torch

from convnet.checks import choose

log = logging.getLogger(__name__)

MEMORY_FORMATS = {
    "auto": None,
    "channels_last": torch.channels_last,
    "contiguous_format": torch.contiguous_format,
}


def cpu_bf16_unit() -> str | None:
    """Return the CPU's bf16 instructions oneDNN computes with ("AMX-BF16", "AVX512_BF16"),
    or None where bf16 is only emulated (then it is slower than fp32)."""
    # torch.cpu's probes (torch >= 2.3) ask the CPU itself; older torch has none.
    probes = (("AMX-BF16", "_is_amx_tile_supported"), ("AVX512_BF16", "_is_avx512_bf16_supported"))
    for unit, probe in probes:
        supported = getattr(torch.cpu, probe, None)
        if supported is not None and supported():
            return unit
    return None


def auto_precision(device_type: str) -> str:
    """Return the Lightning precision `auto` means on a device of this type (cuda, cpu...)."""
    if device_type == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if device_type == "cpu" and cpu_bf16_unit() is not None:
        return "bf16-mixed"
    return "32-true"


def memory_format_for(setting: str, device_type: str) -> torch.memory_format:
    """Return the memory format of the network and its batches for `memory_format: setting`
    on a device of this type; `auto` is channels_last on CUDA and on CPUs with bf16 in
    hardware (oneDNN's fast convolutions there are NHWC, in fp32 too: 209 ms against 260 ms
    for the step above), the default layout elsewhere."""
    chosen = choose(MEMORY_FORMATS, "memory_format", setting)
    if chosen is not None:
        return chosen
    fast_nhwc = device_type == "cuda" or (device_type == "cpu" and cpu_bf16_unit() is not None)
    return torch.channels_last if fast_nhwc else torch.contiguous_format


def describe(precision: str, memory_format: torch.memory_format, device_type: str) -> str:
    """Return one line naming the precision, memory format and what the device has."""
    unit = f", bf16 in hardware: {cpu_bf16_unit() or 'none'}" if device_type == "cpu" else ""
    layout = str(memory_format).removeprefix("torch.")
    return f"training on {device_type} in {precision} with {layout}{unit}"
