"""Feature maps: hooks give each layer's own output; an identity conv shows its input."""

import pytest
import torch
from torch import nn

from convnet.callbacks import FeatureMaps
from convnet.callbacks.base import PictureContext
from convnet.callbacks.feature_maps import feature_map_picture, top_channels
from convnet.callbacks.render import LINE_HEIGHT, colormap, rescale, resize
from convnet.models.trace import capture_outputs

PAD = 2


def _identity_network() -> nn.Sequential:
    conv = nn.Conv2d(3, 3, kernel_size=3, padding=1, bias=False)
    nn.init.dirac_(conv.weight)
    return nn.Sequential(conv, nn.Flatten(), nn.LazyLinear(10))


def test_the_feature_map_of_a_dirac_conv_equals_its_input(shapes_data) -> None:
    network = _identity_network()
    samples = PictureContext(network, shapes_data, "cpu").samples(per_class=1, seed=0)
    outputs = capture_outputs(network, {"0": network[0]}, samples.inputs)
    torch.testing.assert_close(outputs["0"], samples.inputs)


def test_each_tile_of_the_picture_is_its_channel_coloured_at_its_own_scale(shapes_data) -> None:
    inputs = torch.rand(2, 3, 8, 8)
    tile = 16
    picture = feature_map_picture(inputs, inputs, ["a", "b"], "0", top_k=2, tile_size=tile)
    channels = top_channels(inputs, 2)
    grid_height = PAD + 2 * (tile + LINE_HEIGHT + PAD)
    top = picture.shape[1] - grid_height
    for image in range(2):
        for rank in range(2):
            expected, _ = rescale(inputs[image, channels[image, rank]][None, None])
            expected = resize(colormap(expected), tile)[0]
            y = top + PAD + image * (tile + LINE_HEIGHT + PAD)
            x = PAD + (rank + 1) * (tile + PAD)
            torch.testing.assert_close(picture[:, y : y + tile, x : x + tile], expected)


def test_top_channels_rank_by_mean_activation() -> None:
    activations = torch.zeros(1, 4, 2, 2)
    activations[0, 2] = 3.0
    activations[0, 0] = 1.0
    assert top_channels(activations, 2).tolist() == [[2, 0]]


def test_the_callback_draws_every_stage_output_for_one_image_per_class(context) -> None:
    pictures = FeatureMaps(top_k=4).pictures(context)
    assert [p.tag for p in pictures] == [
        "stage1/feature_maps",
        "stage2/feature_maps",
        "stage3/feature_maps",
    ]
    for picture in pictures:
        assert picture.image.shape[0] == 3
        assert picture.image.shape[1] > 10 * (48 + LINE_HEIGHT)  # a row per class


def test_the_fixed_images_are_the_same_every_time(context, shapes_data) -> None:
    first = context.samples(per_class=2, seed=0)
    again = PictureContext(context.network, shapes_data, "cpu").samples(per_class=2, seed=0)
    torch.testing.assert_close(first.inputs, again.inputs)
    assert first.labels.tolist() == [c for c in range(10) for _ in range(2)]
    one = context.samples(per_class=1, seed=0)
    torch.testing.assert_close(one.inputs, first.inputs[::2])  # a prefix of each class


def test_a_layer_that_gives_no_feature_maps_is_refused(context) -> None:
    with pytest.raises(ValueError, match=r"classifier.*not \(N, C, H, W\)"):
        FeatureMaps(layers=["classifier"]).pictures(context)
