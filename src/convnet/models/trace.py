"""One forward pass with a hook on every module: what each module received and gave back.

The layer table, the image size check, stage inference and the picture callbacks all read
a network through `trace`. On the meta device the pass costs no compute or memory (shapes
only) and leaves the network's own tensors untouched; with real inputs it gives the real
outputs of the modules asked for, with their autograd graph.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Call:
    """One call of one module: its name in the network and what went in and came out.

    input: the first positional argument when it is a tensor (else None).
    output: None until the call returns (or when it never did: the pass failed in it).
    finished: the call's place in the order calls returned (-1 until it does).
    flops: floating-point operations inside the call, when counted.
    """

    name: str
    module: nn.Module
    input: Tensor | None
    output: object = None
    finished: int = -1
    flops: int = 0

    @property
    def leaf(self) -> bool:
        """Return whether the module has no submodules (a layer, not a container)."""
        return next(self.module.children(), None) is None

    @property
    def input_size(self) -> tuple[int, ...] | None:
        """Return the input's (H, W) when it is a (B, C, H, W) feature map, else None."""
        return spatial(self.input)

    @property
    def output_size(self) -> tuple[int, ...] | None:
        """Return the output's (H, W) when it is a (B, C, H, W) feature map, else None."""
        return spatial(self.output)


@dataclass
class Trace:
    """The calls of one forward pass, in the order they started, and how the pass ended.

    error: on the meta device, the error that stopped the pass in `failed` (a leaf module),
        None when it ran to the end and `output` is the network's output.
    flops: floating-point operations of the whole pass, leaves and functional code, when
        counted.
    """

    calls: list[Call] = field(default_factory=list)
    output: object = None
    error: Exception | None = None
    flops: int = 0

    @property
    def leaves(self) -> list[Call]:
        """Return the calls of leaf modules, in the order they ran."""
        return [call for call in self.calls if call.leaf]

    @property
    def failed(self) -> Call | None:
        """Return the leaf call the pass failed in (the last one started), if it failed."""
        leaves = self.leaves
        return leaves[-1] if self.error is not None and leaves else None


class EmptyFeatureMap(RuntimeError):
    """Raised from a hook when a module outputs a feature map with no pixels left."""


class _AllCaptured(Exception):
    """Raised from a hook once every module asked for has returned: the rest is skipped."""


def spatial(value: object) -> tuple[int, ...] | None:
    """Return (H, W) of a (B, C, H, W) tensor, else None (flat features have no size)."""
    if isinstance(value, Tensor) and value.dim() == 4:
        return tuple(value.shape[-2:])
    return None


def meta_state(model: nn.Module) -> dict[str, Tensor]:
    """Return the model's parameters and buffers as meta tensors by name, for functional_call."""
    return {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers())
    }


def trace(
    model: nn.Module,
    inputs: Tensor,
    modules: Mapping[str, nn.Module] | None = None,
    stop_early: bool = False,
    count_flops: bool = False,
) -> Trace:
    """Return the trace of one forward pass of `inputs` through `model`.

    Meta `inputs` run the model on meta copies of its weights, in eval mode (batch norm
    then takes a batch of one), and a failure is returned in the trace: an error raised
    by the model, or a feature map left with no pixels (EmptyFeatureMap). A missing meta
    kernel (NotImplementedError) says nothing about the network and is raised. Real
    inputs run the model itself as it is, and its errors are raised.
    modules: the modules to hook, by name; None hooks every module, the model included
        (named "").
    stop_early: end the pass as soon as every module of `modules` has returned.
    count_flops: count each leaf call's floating-point operations (FlopCounterMode).
    """
    hooked = dict(model.named_modules()) if modules is None else dict(modules)
    result = Trace()
    open_calls: list[Call] = []
    returned: set[str] = set()
    order = itertools.count()
    counter = FlopCounterMode(display=False) if count_flops else None

    def before(name: str, module: nn.Module, args: tuple[object, ...]) -> None:
        first = args[0] if args and isinstance(args[0], Tensor) else None
        call = Call(name, module, first, flops=counter.get_total_flops() if counter else 0)
        result.calls.append(call)
        open_calls.append(call)

    def after(module: nn.Module, args: object, output: object) -> None:
        call = open_calls.pop()
        call.output, call.finished = output, next(order)
        returned.add(call.name)
        if counter is not None:
            call.flops = counter.get_total_flops() - call.flops
        size = spatial(output)
        if inputs.is_meta and size is not None and min(size) < 1:
            raise EmptyFeatureMap(f"its output is {size[0]}x{size[1]}")
        if stop_early and len(returned) == len(hooked):
            raise _AllCaptured

    handles = []
    for name, module in hooked.items():
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: before(n, m, a)))
        handles.append(module.register_forward_hook(after))
    was_training = model.training
    try:
        with counter or nullcontext():
            if inputs.is_meta:
                model.eval()
                result.output = torch.func.functional_call(model, meta_state(model), (inputs,))
            else:
                result.output = model(inputs)
    except _AllCaptured:
        pass
    except NotImplementedError:
        raise
    except (RuntimeError, ValueError) as error:
        if not inputs.is_meta:
            raise
        result.error = error
    finally:
        result.flops = counter.get_total_flops() if counter else 0
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return result


def capture_outputs(
    network: nn.Module, layers: Mapping[str, nn.Module], inputs: Tensor, stop_early: bool = False
) -> dict[str, Tensor]:
    """Return each layer's output for `inputs`, by name, from one forward pass.

    The outputs keep their autograd graph when gradients are enabled. stop_early: end the
    forward pass as soon as the last wanted output is captured (the logits are not needed).
    A module that runs more than once per pass gives its first output.
    """
    outputs: dict[str, Tensor] = {}
    for call in trace(network, inputs, layers, stop_early=stop_early).calls:
        if call.finished >= 0:
            outputs.setdefault(call.name, call.output)
    missing = [name for name in layers if name not in outputs]
    if missing:
        raise ValueError(
            f"layers {missing} did not run in {type(network).__name__}'s forward pass; "
            "name modules that the forward pass calls."
        )
    return outputs
