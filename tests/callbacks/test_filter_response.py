"""Gradient ascent: the optimised input excites its channel more than random noise does."""

import torch

from convnet.callbacks import FilterResponse
from convnet.callbacks.filter_response import evenly_spaced, maximise_channels, mean_activation
from convnet.callbacks.state import left_as_found


def test_the_optimised_input_beats_random_noise_for_its_channel(small_vgg) -> None:
    layer = small_vgg.features[4]  # second stage's ReLU, 16 channels
    channels = [0, 5, 10, 15]
    with left_as_found(small_vgg):
        optimised = maximise_channels(small_vgg, layer, channels, (3, 32, 32), steps=24)
        noise = torch.randn(len(channels), 3, 32, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            excited = mean_activation(small_vgg, layer, optimised, channels)
            baseline = mean_activation(small_vgg, layer, noise, channels)
    assert (excited > baseline).all(), (excited, baseline)


def test_the_same_weights_give_the_same_picture(small_vgg) -> None:
    layer = small_vgg.features[4]
    with left_as_found(small_vgg):
        first = maximise_channels(small_vgg, layer, [1, 2], (3, 32, 32), steps=4, seed=3)
        torch.manual_seed(123)  # the global RNG plays no part
        again = maximise_channels(small_vgg, layer, [1, 2], (3, 32, 32), steps=4, seed=3)
    torch.testing.assert_close(first, again)


def test_channels_are_spread_over_the_layer() -> None:
    assert evenly_spaced(4, 16) == [0, 5, 10, 15]
    assert evenly_spaced(8, 3) == [0, 1, 2]


def test_the_callback_draws_the_stages_after_the_first(context) -> None:
    callback = FilterResponse(filters_per_layer=2, steps=2)
    with left_as_found(context.network):
        pictures = callback.pictures(context)
    assert list(pictures) == ["filter_response/features.4", "filter_response/features.7"]
