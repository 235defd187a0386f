"""Grad-CAM: captum's maps equal the textbook formula computed by hand with hooks."""

import importlib.util

import pytest
import torch
from torch import nn

from convnet.callbacks import GradCAM
from convnet.callbacks.gradcam import gradcam
from convnet.callbacks.state import left_as_found
from convnet.checks import ConfigError


def _hand_gradcam(network: nn.Module, layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    kept = {}
    handle = layer.register_forward_hook(lambda m, a, out: kept.update(a=out))
    inputs = inputs.clone().requires_grad_(True)
    logits = network(inputs)
    handle.remove()
    score = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()
    (gradient,) = torch.autograd.grad(score, kept["a"])
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # alpha_k: pooled gradients
    return (weights * kept["a"]).sum(dim=1, keepdim=True).relu()


def test_maps_match_the_hand_computed_formula() -> None:
    torch.manual_seed(0)
    # The hooked layer keeps the input size, so no interpolation blurs the comparison.
    network = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(24, 4),
    )  # fmt: skip
    inputs = torch.randn(5, 3, 12, 12)
    with left_as_found(network):
        maps, probabilities = gradcam(network, network[1], inputs)
        expected = _hand_gradcam(network, network[1], inputs)
    torch.testing.assert_close(maps, expected)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(5))


def test_the_callback_draws_the_last_stage(context) -> None:
    with left_as_found(context.network):
        pictures = GradCAM().pictures(context)
    assert [p.tag for p in pictures] == ["stage3/gradcam/classes_0-4", "stage3/gradcam/classes_5-9"]
    assert "`features.7`" in pictures[0].description


def test_without_captum_the_callback_refuses_when_built(monkeypatch) -> None:
    find_spec = importlib.util.find_spec

    def without_captum(name: str, *args):
        return None if name == "captum" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_captum)
    with pytest.raises(ConfigError, match=r"needs the package captum.*callbacks\.gradcam=null"):
        GradCAM()
