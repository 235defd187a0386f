"""Weights from a file loaded into a freshly built network: `model.pretrained=<path>`.

The file holds a state_dict: torchvision's (resnet18-f37072fd.pth loads into
`model=resnet18 model.stem=imagenet`, vgg weights into `model.head=imagenet`), a
`torch.save(network.state_dict())`, or a convnet .ckpt, whose `state_dict` holds the
network's tensors under `model.`. It is read with weights_only=True: tensors only, no
pickled Python objects (which could run code) are unpickled.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from convnet.config import ConfigError

KEY = "model.pretrained"
# A convnet .ckpt holds the LightningModule's state_dict, whose network is its `model`.
_MODULE_PREFIX = "model."
# Lines of a mismatch shown per kind (missing, unexpected, shape), the rest counted.
_SHOWN = 5
# torchvision's ImageNet ResNets by block type and blocks per stage.
_RESNETS = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}
# VGG depth by its number of convolutions.
_VGGS = {8: "vgg11", 10: "vgg13", 13: "vgg16", 16: "vgg19"}


class PretrainedError(ConfigError):
    """A `model.pretrained` file that cannot be loaded; the message names the file and fix."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Return the network tensors by name that the file at `path` holds (on the CPU).

    Raises PretrainedError for a missing, truncated or foreign file, one holding pickled
    objects besides tensors, or one holding no state_dict.
    """
    if not isinstance(path, str | Path) or not str(path):
        raise PretrainedError(
            f"{KEY}={path!r} is not allowed: give the path of a state_dict file, or null."
        )
    file = Path(path).expanduser()
    if not file.is_file():
        raise PretrainedError(
            f"{KEY}={path}: no such file. Give the path of a state_dict file (torchvision "
            f"weights such as resnet18-f37072fd.pth, or a convnet .ckpt), or {KEY}=null to "
            "start from random weights."
        )
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch names a refused object as "Unsupported global: GLOBAL module.Name was not
        # an allowed global by default. ..."; other unpickling errors are damaged data.
        found = re.search(r"Unsupported global: [^\n]*? by default", str(error))
        if found is None:
            raise _unreadable(path, error) from error
        detail = f" ({found.group(0)})"
        raise PretrainedError(
            f"{KEY}={path} holds pickled Python objects besides tensors{detail}, which "
            "convnet refuses to unpickle: it loads with torch.load(weights_only=True) so that "
            "no file can run code. Save the weights alone: "
            "torch.save(network.state_dict(), path)."
        ) from error
    except Exception as error:
        raise _unreadable(path, error) from error
    return _network_tensors(loaded, path)


def _unreadable(path: str | Path, error: Exception) -> PretrainedError:
    # torch's weights-only unpickler hides the cause after its advice; show the cause alone.
    text = str(error).split("WeightsUnpickler error:")[-1].strip()
    reason = text.splitlines()[0].split(". ")[0] if text else "no data"
    return PretrainedError(
        f"{KEY}={path} is truncated or not a PyTorch file ({type(error).__name__}: {reason}). "
        "Download or copy it again, or give another file."
    )


def _network_tensors(loaded: object, path: str | Path) -> dict[str, torch.Tensor]:
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else loaded
    if not isinstance(state, Mapping) or not state:
        found = type(state).__name__
        found = f"an empty {found}" if isinstance(state, Mapping) else f"a {found}"
    else:
        found = next(
            (
                f"{key!r}: {type(value).__name__}"
                for key, value in state.items()
                if not (isinstance(key, str) and isinstance(value, torch.Tensor))
            ),
            "",
        )
    if found:
        raise PretrainedError(
            f"{KEY}={path} holds no state_dict (a mapping of parameter names to tensors; "
            f"found {found}). Save one with torch.save(network.state_dict(), path)."
        )
    if any(key.startswith(_MODULE_PREFIX) for key in state):
        return {
            key.removeprefix(_MODULE_PREFIX): tensor
            for key, tensor in state.items()
            if key.startswith(_MODULE_PREFIX)
        }
    return dict(state)


def load_pretrained(model: nn.Module, path: str | Path) -> nn.Module:
    """Return `model` with the weights of the file at `path` loaded strictly into it.

    Raises PretrainedError (before any training) naming the file, and listing the missing,
    unexpected and differently shaped tensors when it holds another network's weights.
    """
    state = read_state_dict(path)
    try:
        with warnings.catch_warnings():
            # A network built on the meta device (to be measured, as summary.py does) has no
            # memory to copy into: torch then only checks that keys and shapes fit.
            warnings.filterwarnings("ignore", message=r".*to a meta parameter.*is a no-op")
            model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise PretrainedError(_mismatch(model, state, path, error)) from error
    return model


def _mismatch(
    model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, error: Exception
) -> str:
    """Return the message for a file whose tensors do not fit `model`."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    shapes = [
        f"{key}: file {found[key]} vs model {expected[key]}"
        for key in expected
        if key in found and found[key] != expected[key]
    ]
    kinds = [
        ("missing", [key for key in expected if key not in found]),
        ("unexpected", [key for key in found if key not in expected]),
        ("shape", shapes),
    ]
    lines = []
    for kind, items in kinds:
        if items:
            more = f" (and {len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
            lines.append(f"  {kind}: {', '.join(items[:_SHOWN])}{more}")
    if not lines:  # e.g. a tensor torch refuses to copy; its own words say which
        lines.append(f"  {str(error).strip().splitlines()[-1].strip()}")
    guess = _describe(state)
    seems = f"The file seems to hold {guess}. " if guess else ""
    return (
        f"{KEY}={path} does not fit the {type(model).__name__} this config builds:\n"
        + "\n".join(lines)
        + f"\n{seems}Give weights of the same architecture and number of classes "
        "(data.num_classes); torchvision's need the ImageNet layout (model.stem=imagenet for "
        f"a resnet, model.head=imagenet for a vgg). Or set {KEY}=null."
    )


def _describe(state: Mapping[str, torch.Tensor]) -> str | None:
    """Return which network a state_dict seems to be for (e.g. "a resnet18 with the ImageNet
    stem and 1000 classes"), or None when its keys follow no layout convnet knows."""
    if "fc.weight" in state and "conv1.weight" in state:
        blocks: dict[int, set[int]] = {}
        for key in state:
            found = re.match(r"layer(\d+)\.(\d+)\.", key)
            if found:
                blocks.setdefault(int(found[1]), set()).add(int(found[2]))
        block = "bottleneck" if any(".conv3." in key for key in state) else "basic"
        per_stage = tuple(len(blocks[stage]) for stage in sorted(blocks))
        name = _RESNETS.get((block, per_stage), f"ResNet ({block} blocks {list(per_stage)})")
        stem = "ImageNet" if state["conv1.weight"].shape[-1] == 7 else "CIFAR"
        return f"a {name} with the {stem} stem and {state['fc.weight'].shape[0]} classes"
    convs = [k for k, v in state.items() if k.startswith("features.") and v.dim() == 4]
    heads = [k for k in state if k.startswith("classifier.") and k.endswith(".weight")]
    if convs and heads:
        norm = any(k.startswith("features.") and k.endswith(".running_mean") for k in state)
        name = _VGGS.get(len(convs), f"VGG with {len(convs)} convolutions")
        name += ("_bn" if name in _VGGS.values() else " and batch norm") if norm else ""
        return f"a {name} with {state[heads[-1]].shape[0]} classes"
    if any(key.startswith("layers.") for key in state):
        return "a custom stack (CustomNet: configs/model/custom*.yaml, resnet9)"
    return None
