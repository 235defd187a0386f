"""Feature maps: hooks give each layer's own output; an identity conv shows its input."""

import pytest
import torch
from torch import nn

from convnet.callbacks import FeatureMaps
from convnet.callbacks.base import PictureContext
from convnet.callbacks.feature_maps import NAME_WIDTH, feature_map_pages, top_channels
from convnet.callbacks.render import LINE_HEIGHT, MAX_SIZE, colormap, rescale, resize, text_width
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
    tile, gap = 16, 6
    (page,), stated = feature_map_pages(inputs, inputs, [0, 1], ["a", "b"], top_k=2, tile_size=tile)
    part, picture = page
    assert part == "classes_0-1" and "each map" in stated
    channels = top_channels(inputs, 2)
    left = min(NAME_WIDTH, max(tile, text_width("a"), text_width("b"))) + gap
    cell = max(tile, text_width("2")) + gap
    for image in range(2):
        for rank in range(2):
            expected, _ = rescale(inputs[image, channels[image, rank]][None, None])
            expected = resize(colormap(expected), tile)[0]
            y = image * (tile + LINE_HEIGHT + gap) + gap // 2
            x = left + rank * cell + (cell - tile) // 2
            tile_pixels = picture[:, y : y + tile, x : x + tile]
            torch.testing.assert_close(tile_pixels, expected, atol=0.5 / 255, rtol=0)


def test_pages_hold_a_few_images_each_and_fit_tensorboard() -> None:
    activations = torch.rand(10, 128, 8, 8)
    pages, _ = feature_map_pages(
        activations, torch.rand(10, 3, 32, 32), list(range(10)),
        ["crescent"] * 10, top_k=8, tile_size=42, per_page=4,
    )  # fmt: skip
    assert [part for part, _ in pages] == ["classes_0-3", "classes_4-6", "classes_7-9"]
    for _, picture in pages:
        assert picture.shape[2] <= MAX_SIZE[0] and picture.shape[1] <= MAX_SIZE[1]


def test_top_channels_rank_by_mean_activation() -> None:
    activations = torch.zeros(1, 4, 2, 2)
    activations[0, 2] = 3.0
    activations[0, 0] = 1.0
    assert top_channels(activations, 2).tolist() == [[2, 0]]


def test_the_callback_draws_every_stage_output_a_few_classes_a_tag(context) -> None:
    pictures = FeatureMaps(top_k=4).pictures(context)
    assert [p.tag for p in pictures] == [
        f"stage{stage}/feature_maps/{part}"
        for stage in (1, 2, 3)
        for part in ("classes_0-3", "classes_4-6", "classes_7-9")
    ]
    first = pictures[0]
    assert first.image.shape[0] == 3 and first.image.shape[1] == 4 * (42 + LINE_HEIGHT + 6)
    assert "`features.1`" in first.description and "classes 0-3" in first.description


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
