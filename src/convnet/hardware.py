"""What the training device does fast: bf16 in hardware, and the memory format of convolutions.

`precision: auto` and `memory_format: auto` resolve here, per device. On a CUDA GPU with
bf16, and on a CPU with bf16 in hardware (AMX-BF16 or AVX512_BF16, as on Intel Xeons from
Sapphire Rapids on), training runs in bf16 autocast with channels_last; elsewhere in fp32,
with channels_last on x86 CPUs with AVX2 or AVX-512, where oneDNN's NHWC convolutions are
faster in fp32 too, and the default layout on other CPUs.
Autocast keeps what is numerically delicate in fp32 on the CPU as on CUDA: the weights,
their gradients and the optimizer state, batch-norm statistics, the loss and the metrics.

Measured on 2 Sapphire Rapids cores (oneDNN runs bf16 convolutions on AMX), a plain PyTorch
step of ResNet-20 at batch 128, 32x32, SGD: NCHW fp32 260 ms, channels_last fp32 209 ms,
NCHW bf16 138 ms, channels_last bf16 112 ms (2.3x fp32 NCHW). On 2 AMD EPYC cores with AVX2
and no AVX-512 (bf16 emulated, 12x slower than fp32), the same step in fp32: NCHW 484 ms,
channels_last 408 ms (1.19x); the default model at batch 32 26.2 against 20.4 ms (1.28x) and
at 128 104.7 against 79.4 ms (1.32x); no conv layer tried there was slower in NHWC (3x3
depthwise 1.45x, groups=4 1.18x, 1x1 1.11x, dilation 2 and 5x5 1.00x).
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


# torch's CPU capability where oneDNN's convolutions are fastest in NHWC, bf16 or not: the
# x86 vector units. Elsewhere (Arm, POWER, s390x) nothing here measured it.
NHWC_CPU_CAPABILITIES = ("AVX2", "AVX512")


def cpu_capability() -> str:
    """Return the vector instructions torch's CPU kernels use here ("AVX2", "AVX512",
    "SVE256", "DEFAULT"...), as torch itself detected them."""
    return torch.backends.cpu.get_cpu_capability()


def cpu_prefers_channels_last() -> bool:
    """Return whether this CPU trains convolutions faster in channels_last."""
    return cpu_bf16_unit() is not None or cpu_capability() in NHWC_CPU_CAPABILITIES


def auto_precision(device_type: str) -> str:
    """Return the Lightning precision `auto` means on a device of this type (cuda, cpu...)."""
    if device_type == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if device_type == "cpu" and cpu_bf16_unit() is not None:
        return "bf16-mixed"
    return "32-true"


def memory_format_for(setting: str, device_type: str) -> torch.memory_format:
    """Return the memory format of the network and its batches for `memory_format: setting`
    on a device of this type; `auto` is channels_last on CUDA and on CPUs whose convolutions
    are faster in it (cpu_prefers_channels_last: oneDNN's on x86, 1.2-1.3x in fp32 for the
    steps above), the default layout elsewhere."""
    chosen = choose(MEMORY_FORMATS, "memory_format", setting)
    if chosen is not None:
        return chosen
    fast_nhwc = device_type == "cuda" or (device_type == "cpu" and cpu_prefers_channels_last())
    return torch.channels_last if fast_nhwc else torch.contiguous_format


def cpu_description() -> str:
    """Return what this CPU computes with, e.g. `AVX512, bf16 in hardware: AMX-BF16`."""
    return f"{cpu_capability()}, bf16 in hardware: {cpu_bf16_unit() or 'none'}"


def describe(precision: str, memory_format: torch.memory_format, device_type: str) -> str:
    """Return one line naming the precision, memory format and what the device has."""
    unit = f" ({cpu_description()})" if device_type == "cpu" else ""
    layout = str(memory_format).removeprefix("torch.")
    return f"training on {device_type}{unit} in {precision} with {layout}"
