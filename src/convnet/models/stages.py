"""The stages a network declares: where each resolution stage ends, as timm's `feature_info`.

Every convnet network has `feature_info`, a list of StageInfo, one per stage, in order. A
stage ends where the resolution drops, or at the network's own stage boundaries (ResNet's
layer1..layerN, VGG's pools); a ResNet's stem is not a stage. Names are the same in every
family (`stage1`..`stageN`), so pictures of two architectures can be compared stage by
stage. A network without a declaration (torchvision's, any nn.Module) has its stages
inferred from one traced forward pass (`infer_stages`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from convnet.models.fields import leaf_fields
from convnet.models.trace import Call, trace


@dataclass(frozen=True)
class StageInfo:
    """One stage of a network.

    name: `stage1`..`stageN`, counted the same way in every family.
    module: the module whose output is the stage's output (what feature maps show).
    first_conv: the stage's first nn.Conv2d (what filter pictures show).
    channels: the output's channels (timm's `num_chs`).
    reduction: the output's total stride from the input, in input pixels per output value.
    """

    name: str
    module: str
    first_conv: str
    channels: int
    reduction: int


def first_conv_in(network: nn.Module, prefix: str) -> str | None:
    """Return the full name of the first nn.Conv2d in network.<prefix> (itself included)."""
    for name, module in network.get_submodule(prefix).named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{prefix}.{name}" if name else prefix
    return None


def _output_call(ran: list[Call], leaf: int) -> Call:
    """Return the call whose output stands for ran[leaf]'s: the leaf's own, or the outermost
    module finishing right after it whose output is a new tensor of the same size (a residual
    layer's x + body(x)); a Sequential passing its last output on is not."""
    chosen = ran[leaf]
    for outer in ran[leaf + 1 :]:
        if (
            not ran[leaf].name.startswith(f"{outer.name}.")
            or outer.output_size != chosen.output_size
        ):
            break
        if outer.output is not chosen.output:
            chosen = outer
    return chosen


def infer_stages(
    network: nn.Module, in_channels: int, image_size: tuple[int, int]
) -> list[StageInfo]:
    """Return the stages of a network that declares none, from one meta-device forward pass.

    Leaf modules are grouped by the resolution of their outputs; a group with a convolution
    is a stage, its output the last module at that resolution (or the module around it that
    computes from its output, as a residual layer's x + body(x)).
    """
    image = torch.empty(1, in_channels, *image_size, device="meta")
    traced = trace(network, image)
    if traced.error is not None:
        raise ValueError(
            f"{type(network).__name__} fails on {list(image_size)} images: {traced.error}"
        )
    jumps = {id(call): field.jump[0] for call, field in leaf_fields(traced, image)}
    # Every module but the network itself, in the order they returned (first call only).
    seen: set[str] = set()
    ran = []
    for call in sorted(traced.calls, key=lambda c: c.finished):
        if call.name and call.name not in seen:
            seen.add(call.name)
            ran.append(call)
    found: list[StageInfo] = []
    group: list[int] = []
    leaves = [i for i, call in enumerate(ran) if call.leaf]
    for index in [*leaves, None]:
        size = None if index is None else ran[index].output_size
        if group and (index is None or size != ran[group[0]].output_size):
            convs = [ran[i].name for i in group if isinstance(ran[i].module, nn.Conv2d)]
            if convs and ran[group[0]].output_size is not None:
                output = _output_call(ran, group[-1])
                name = f"stage{len(found) + 1}"
                channels = output.output.shape[1]
                found.append(
                    StageInfo(name, output.name, convs[0], channels, jumps[id(ran[group[-1]])])
                )
            group = []
        if index is not None:
            group.append(index)
    return found
