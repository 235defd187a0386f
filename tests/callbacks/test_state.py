"""Drawing leaves training as it was: modes, requires_grad, gradients, RNG streams."""

import torch

from convnet.callbacks import FilterResponse, GradCAM
from convnet.callbacks.state import left_as_found


def test_modes_gradients_and_random_streams_are_restored(context) -> None:
    network = context.network.train()
    network.features[1].eval()  # a mixed state must come back as it was
    parameters = list(network.parameters())
    parameters[-1].requires_grad_(False)
    network(torch.randn(2, 3, 32, 32)).sum().backward()
    grads = [p.grad for p in parameters]
    modes = [m.training for m in network.modules()]
    torch.manual_seed(7)
    expected_draw = torch.rand(3)
    torch.manual_seed(7)

    with left_as_found(network):
        assert not network.training and not any(p.requires_grad for p in parameters)
        GradCAM().pictures(context)
        FilterResponse(filters_per_layer=2, steps=3).pictures(context)
        torch.rand(100)  # even a draw of the global RNG inside is undone

    assert torch.equal(torch.rand(3), expected_draw)
    assert [m.training for m in network.modules()] == modes
    assert [p.requires_grad for p in parameters] == [True] * (len(parameters) - 1) + [False]
    assert all(p.grad is g for p, g in zip(parameters, grads, strict=True))


def test_restored_even_when_drawing_fails(context) -> None:
    network = context.network.train()
    try:
        with left_as_found(network):
            raise RuntimeError("a picture failed")
    except RuntimeError:
        pass
    assert network.training and all(p.requires_grad for p in network.parameters())


def test_gradients_are_enabled_inside_inference_mode(context) -> None:
    with torch.inference_mode(), left_as_found(context.network):
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
