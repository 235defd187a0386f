"""Layer outputs by forward hooks: what a named layer gives for a batch."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn


class _Captured(Exception):
    """Raised from a hook once every wanted output is in: the rest of the network is skipped."""


def capture_outputs(
    network: nn.Module, layers: Mapping[str, nn.Module], inputs: Tensor, stop_early: bool = False
) -> dict[str, Tensor]:
    """Return each layer's output for `inputs`, by name, from one forward pass.

    The outputs keep their autograd graph when gradients are enabled. stop_early: end the
    forward pass as soon as the last wanted output is captured (the logits are not needed).
    A module that runs more than once per pass gives its first output.
    """
    outputs: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(module: nn.Module, args: object, output: Tensor) -> None:
            outputs.setdefault(name, output)
            if stop_early and len(outputs) == len(layers):
                raise _Captured

        return hook

    handles = [module.register_forward_hook(keep(name)) for name, module in layers.items()]
    try:
        network(inputs)
    except _Captured:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in layers if name not in outputs]
    if missing:
        raise ValueError(
            f"layers {missing} did not run in {type(network).__name__}'s forward pass; "
            "name modules that the forward pass calls."
        )
    return outputs
