"""Weights from a file loaded into a freshly built network: `model.pretrained=<path>`.

The file holds a state_dict: torchvision's (resnet18-f37072fd.pth loads into
`model=resnet18 model.stem=imagenet`, vgg weights into `model.head=imagenet`), a
`torch.save(network.state_dict())`, or a convnet .ckpt, whose `state_dict` holds the
network's tensors under `model.`. It is read with weights_only=True: tensors only, no
pickled Python objects (which could run code) are unpickled.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from convnet.checks import listed
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
# The pickle protocol torch.save writes and its weights-only reader reads.
_TORCH_PROTOCOL = 2
# Protocol 2 pickles name modules as Python 2 did; these are the ones torch.save writes.
_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
# Containers torch's weights-only reader rebuilds besides its own classes.
_CONTAINERS = {"collections.OrderedDict", "builtins.set", "builtins.frozenset"}
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
    if file.is_dir():
        found = sorted(f.name for f in file.iterdir() if f.suffix in (".pth", ".pt", ".ckpt"))
        inside = f": give one of its files ({listed(found)})" if found else ""
        raise PretrainedError(f"{KEY}={path} is a folder, not a state_dict file{inside}")
    if not file.is_file():
        raise PretrainedError(
            f"{KEY}={path}: no such file. Give the path of a state_dict file (torchvision "
            f"weights such as resnet18-f37072fd.pth, or a convnet .ckpt), or {KEY}=null to "
            "start from random weights."
        )
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    # torch's words for a refusal change between releases; the file itself says what it is.
    except Exception as error:
        raise _refusal(file, path, error) from error
    return _network_tensors(loaded, path)


def _refusal(file: Path, path: str | Path, error: Exception) -> PretrainedError:
    """Return the error for a file torch.load(weights_only=True) refused: objects or damage."""
    protocol, names = _pickle_contents(file)
    if protocol is None:
        return _unreadable(path, error)
    objects = _unsafe_globals(file) or sorted(
        name for name in names if not name.startswith("torch.") and name not in _CONTAINERS
    )
    save = "Save the weights alone: torch.save(network.state_dict(), path)."
    if not objects and protocol == _TORCH_PROTOCOL:
        return _unreadable(path, error)  # a whole pickle of tensors: the tensor data is damaged
    if objects:
        shown = ", ".join(objects[:_SHOWN]) + (" ..." if len(objects) > _SHOWN else "")
        return PretrainedError(
            f"{KEY}={path} holds pickled Python objects, not tensors alone ({shown}). convnet "
            "reads weights with torch.load(weights_only=True) and never unpickles objects, "
            f"which could run code. {save}"
        )
    return PretrainedError(
        f"{KEY}={path} is a complete pickle (protocol {protocol}) that torch.load("
        f"weights_only=True) cannot read ({_reason(error)}): it was written by pickle.dump or "
        f"with another pickle protocol than torch.save's. {save}"
    )


def _unsafe_globals(file: Path) -> list[str]:
    """Return the classes and functions in a torch.save zip file that weights_only refuses."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(file))
    # It reads only torch.save's zip files of pickle protocol 2; the caller scans the rest.
    except Exception:
        return []


def _pickle_contents(file: Path) -> tuple[int | None, set[str]]:
    """Return the pickle protocol of the file's pickled data and the module.name of every
    class and function it names; the protocol is None when there is no complete pickle."""
    try:
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                record = next(n for n in archive.namelist() if n.rpartition("/")[2] == "data.pkl")
                data = archive.read(record)
        else:
            data = file.read_bytes()
    except (OSError, zipfile.BadZipFile, StopIteration):
        return None, set()
    stream, protocol, names = io.BytesIO(data), None, set()
    # A plain pickle is one pickle; torch's legacy format is several, then raw tensor bytes.
    while stream.read(1) == pickle.PROTO:
        stream.seek(-1, io.SEEK_CUR)
        try:
            found, pickle_protocol = _names_in_one_pickle(stream)
        except Exception:  # truncated or not a pickle: pickletools raises several types
            break
        names |= found
        protocol = pickle_protocol if protocol is None else protocol
    return protocol, names


def _names_in_one_pickle(stream: io.BytesIO) -> tuple[set[str], int]:
    """Return what the next pickle in `stream` names and its protocol, reading, never running."""
    names: set[str] = set()
    protocol = 0
    pushed: list[object] = []  # strings pushed, None for anything else
    memo: dict[int, object] = {}
    for opcode, arg, _ in pickletools.genops(stream):
        kind = opcode.name
        if kind == "PROTO":
            protocol = arg
        elif kind in ("GLOBAL", "INST"):
            module, name = arg.split(" ", 1)
            names.add(f"{_PYTHON2_MODULES.get(module, module)}.{name}")
        elif kind == "STACK_GLOBAL" and len(pushed) >= 2:
            names.add(f"{pushed[-2]}.{pushed[-1]}")
        elif kind == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif kind in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif kind in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        else:
            pushed.append(arg if isinstance(arg, str) else None)
    return names, protocol


def _reason(error: Exception) -> str:
    """Return torch's reason for refusing a file, without its advice around it."""
    # torch's weights-only unpickler hides the cause after its advice; show the cause alone.
    text = str(error).split("WeightsUnpickler error:")[-1].strip()
    reason = text.splitlines()[0].split(". ")[0] if text else "no data"
    return f"{type(error).__name__}: {reason}"


def _unreadable(path: str | Path, error: Exception) -> PretrainedError:
    return PretrainedError(
        f"{KEY}={path} is truncated or not a PyTorch file ({_reason(error)}). "
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
            lines.append(f"  {kind}: {listed(items, _SHOWN)}")
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
