"""Leave the network as training left it: modes, requires_grad, gradients and RNG streams."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
from torch import nn


def _cuda_devices() -> list[int]:
    # Only the current device: forking every visible GPU's RNG costs time and warns.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return [torch.cuda.current_device()]
    return []


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run the block with `count` intra-op CPU threads, then restore the previous number."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def few_threads(tensor: torch.Tensor) -> AbstractContextManager[None]:
    """Return a context of one CPU thread when `tensor` is on the CPU (see left_as_found)."""
    return cpu_threads(1) if tensor.device.type == "cpu" else nullcontext()


def run_precision(trainer: object) -> AbstractContextManager[None]:
    """Return the context the trainer runs the network's forward pass in (bf16 autocast in a
    bf16-mixed run, nothing in fp32), or nothing for a trainer without a precision plugin."""
    plugin = getattr(trainer, "precision_plugin", None)
    return plugin.forward_context() if plugin is not None else nullcontext()


@contextmanager
def left_as_found(network: nn.Module) -> Iterator[nn.Module]:
    """Yield `network` in eval mode with frozen parameters; restore everything on exit.

    Inside, parameters do not require grad and have no .grad, so a backward pass (Grad-CAM,
    gradient ascent) reaches the input or an activation but never touches the optimizer's
    gradients; batch norm uses, and does not update, its running statistics. On exit each
    module's train/eval mode, each parameter's requires_grad and .grad, and the CPU and
    CUDA random number generators are as they were, so training continues unchanged.

    On the CPU the block runs on one thread: pictures are made of many tiny operations,
    which threads only slow down (each waits for the others), many times over on a
    machine shared with other work.
    """
    modes = [(module, module.training) for module in network.modules()]
    parameters = [(p, p.requires_grad, p.grad) for p in network.parameters()]
    threads = few_threads(parameters[0][0]) if parameters else nullcontext()
    with torch.random.fork_rng(devices=_cuda_devices()), threads:
        try:
            network.eval()
            for parameter, _, _ in parameters:
                parameter.requires_grad_(False)
                parameter.grad = None
            # Lightning validates under inference mode; these pictures need autograd.
            with torch.inference_mode(False), torch.enable_grad():
                yield network
        finally:
            for module, training in modes:
                module.training = training
            for parameter, requires_grad, grad in parameters:
                parameter.requires_grad_(requires_grad)
                parameter.grad = grad
