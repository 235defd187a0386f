"""Finding layers by name or type in any network: stages, their first convs, the penultimate.

Callbacks never assume an architecture. A config names layers by their module name
(`features.4`, `layer2.0.conv1`); without names a network's stages are found as:
- networks with `stage_names` (convnet's and torchvision's ResNet layout): each stage
  `layer1`..`layerN` is one stage, its output the stage module's output;
- networks with a `features` nn.Sequential (the VGG layout): split at the pooling layers,
  a stage's output being the last module before its pool;
- any other nn.Module: one forward pass of an example batch, convolutions grouped by the
  resolution of their outputs, a stage's output being the last module at that resolution
  (or the module around it that computes from its output, as a residual layer's x + body(x)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)


@dataclass(frozen=True)
class Stage:
    """One resolution stage: its name, its first Conv2d and the module giving its output."""

    name: str
    first_conv: str
    output: str


def network_of(pl_module: nn.Module, attribute: str = "model") -> nn.Module:
    """Return the network a LightningModule wraps (`pl_module.<attribute>`), or the module."""
    network = getattr(pl_module, attribute, None)
    return network if isinstance(network, nn.Module) else pl_module


def first_conv(network: nn.Module) -> str:
    """Return the name of the network's first Conv2d (in registration order)."""
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise ValueError(f"{type(network).__name__} has no nn.Conv2d layer: there are no filters")


def classifier_layer(network: nn.Module) -> str:
    """Return the name of the layer that makes the class scores: the last nn.Linear, or
    the last Conv2d of an all-convolutional network."""
    for kind in (nn.Linear, nn.Conv2d):
        names = [name for name, module in network.named_modules() if isinstance(module, kind)]
        if names:
            return names[-1]
    raise ValueError(
        f"{type(network).__name__} has neither nn.Linear nor nn.Conv2d layers: name the "
        "layer whose output to embed (callbacks.embeddings.layer=<module name>)."
    )


def named_modules(network: nn.Module, names: Sequence[str], key: str) -> dict[str, nn.Module]:
    """Return {name: module} for `names`, or raise naming the config key and valid names."""
    modules = dict(network.named_modules())
    unknown = [name for name in names if name not in modules or not name]
    if unknown:
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        shown = ", ".join(convs[:24]) + (", ..." if len(convs) > 24 else "")
        raise ValueError(
            f"{key}={list(names)}: {type(network).__name__} has no module named "
            f"{', '.join(map(repr, unknown))}. Use module names as in named_modules(), e.g. "
            f"its convolutions: {shown}; or {key}=null for the first conv of every stage."
        )
    return {name: modules[name] for name in names}


def _first_conv_in(network: nn.Module, prefix: str) -> str | None:
    for name, module in network.get_submodule(prefix).named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{prefix}.{name}" if name else prefix
    return None


def _named_stages(network: nn.Module) -> list[Stage]:
    found = []
    for name in network.stage_names:
        conv = _first_conv_in(network, name)
        if conv is not None:
            found.append(Stage(name, conv, name))
    return found


def _split_at_pools(features: nn.Sequential, prefix: str = "features") -> list[Stage]:
    found: list[Stage] = []
    run: list[tuple[str, nn.Module]] = []
    for index, module in [*enumerate(features), (len(features), nn.MaxPool2d(1))]:
        if isinstance(module, POOLS):
            convs = [name for name, m in run if isinstance(m, nn.Conv2d)]
            if convs:
                found.append(Stage(f"stage{len(found) + 1}", convs[0], run[-1][0]))
            run = []
        else:
            run.append((f"{prefix}.{index}", module))
    return found


# A module that ran: (name, module, output H x W or None, output).
_Ran = tuple[str, nn.Module, tuple[int, ...] | None, object]


def _output_module(ran: list[_Ran], leaf: int) -> str:
    """Return the name of the module whose output stands for ran[leaf]'s: the leaf's own, or
    the outermost module finishing right after it whose output is a new tensor of the same
    size (a residual layer's x + body(x)); a Sequential passing its last output on is not."""
    name, _, size, tensor = ran[leaf]
    chosen = name
    for outer, _, outer_size, output in ran[leaf + 1 :]:
        if not name.startswith(f"{outer}.") or outer_size != size:
            break
        if output is not tensor:
            chosen, tensor = outer, output
    return chosen


def _stages_by_resolution(network: nn.Module, example: Tensor) -> list[Stage]:
    # Every module but the network itself, in the order they finished (first call only).
    ran: list[_Ran] = []
    seen: set[str] = set()

    def record(name: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if name not in seen:
                seen.add(name)
                is_map = isinstance(output, Tensor) and output.dim() == 4
                ran.append((name, module, tuple(output.shape[-2:]) if is_map else None, output))

        return hook

    modules = [(n, m) for n, m in network.named_modules() if n]
    handles = [module.register_forward_hook(record(name)) for name, module in modules]
    try:
        with torch.no_grad():
            network(example)
    finally:
        for handle in handles:
            handle.remove()
    # Indices into `ran` of the leaf modules, in the order they ran.
    order = [i for i, (_, module, _, _) in enumerate(ran) if next(module.children(), None) is None]
    found: list[Stage] = []
    group: list[int] = []
    for index in [*order, None]:
        size = None if index is None else ran[index][2]
        if group and (index is None or size != ran[group[0]][2]):
            convs = [ran[i][0] for i in group if isinstance(ran[i][1], nn.Conv2d)]
            if convs and ran[group[0]][2] is not None:
                output = _output_module(ran, group[-1])
                found.append(Stage(f"stage{len(found) + 1}", convs[0], output))
            group = []
        if index is not None:
            group.append(index)
    return found


def stages(network: nn.Module, example: Tensor | None = None) -> list[Stage]:
    """Return the network's stages, found as the module docstring says.

    example: one input batch, needed only for networks with neither `stage_names` nor a
        `features` nn.Sequential (they are traced with one forward pass).
    """
    if isinstance(getattr(network, "stage_names", None), list | tuple):
        found = _named_stages(network)
    elif isinstance(getattr(network, "features", None), nn.Sequential):
        found = _split_at_pools(network.features)
    elif example is not None:
        found = _stages_by_resolution(network, example)
    else:
        raise ValueError(
            f"{type(network).__name__} has neither stage_names nor a features Sequential: "
            "an example input is needed to find its stages, or name the layers in the config."
        )
    if not found:
        raise ValueError(f"no convolution stage found in {type(network).__name__}")
    return found
