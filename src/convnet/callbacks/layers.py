"""Finding layers by name or type in any network: stages, their first convs, the penultimate.

Callbacks never assume an architecture. A config names layers by their module name
(`features.4`, `layer2.0.conv1`); without names the pictures draw the network's stages:
those it declares (`feature_info`, every convnet network has one, see convnet.models.stages),
or, for any other nn.Module, those inferred from one traced forward pass of its input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from convnet.callbacks.tags import HEAD, STEM
from convnet.models.stages import StageInfo, infer_stages


@dataclass(frozen=True)
class Stage:
    """One stage as pictures find it: its name (`stage1`..`stageN` in every family, the
    first part of its pictures' tags), its first Conv2d and the module giving its output
    (a network's StageInfo: `module` is `output`)."""

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


def stages(network: nn.Module, example: Tensor | None = None) -> list[Stage]:
    """Return the network's stages: those it declares (`feature_info`), else inferred.

    example: one input batch, needed only for networks that declare no stages: its shape
        is traced on the meta device (its values are not read).
    """
    declared = getattr(network, "feature_info", None)
    if isinstance(declared, list | tuple) and all(isinstance(s, StageInfo) for s in declared):
        found = list(declared)
    elif example is not None:
        found = infer_stages(network, example.shape[1], tuple(example.shape[-2:]))
    else:
        raise ValueError(
            f"{type(network).__name__} declares no stages (feature_info): an example input is "
            "needed to infer them, or name the layers in the config."
        )
    if not found:
        raise ValueError(f"no convolution stage found in {type(network).__name__}")
    return [Stage(info.name, info.first_conv, info.module) for info in found]


def module_stages(network: nn.Module, found: Sequence[Stage]) -> dict[str, str]:
    """Return {module name: stage name} for every module of the network but itself.

    A module belongs to the stage whose output module holds it, else to the last stage
    whose first conv comes before it in registration order (a pool between two stages is
    the earlier one's); modules before the first stage are `stem`, those after the last
    stage's output `head` (the classifier).
    """
    names = [name for name, _ in network.named_modules() if name]
    position = {name: index for index, name in enumerate(names)}
    last_output = position[found[-1].output]
    owner = {}
    for name in names:
        holders = [s.name for s in found if name == s.output or name.startswith(f"{s.output}.")]
        started = [s.name for s in found if position[s.first_conv] <= position[name]]
        if holders:
            owner[name] = holders[0]
        elif not started:
            owner[name] = STEM
        elif position[name] > last_output:
            owner[name] = HEAD
        else:
            owner[name] = started[-1]
    return owner


def picture_stage(network: nn.Module, found: Sequence[Stage], name: str) -> str:
    """Return the first part of the tags of the pictures of module `name`: the stage
    whose first conv or output it is; `stem` for the network's first conv when no stage
    starts with it; else the module's own name (a layer a config names that is neither)."""
    for stage in found:
        if name in (stage.first_conv, stage.output):
            return stage.name
    return STEM if name == first_conv(network) else name
