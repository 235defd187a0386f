"""Filter pictures: known weights show up as known pixels in the logged TensorBoard image,
strongest filters first, numbered, with their change since the start."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.callbacks import FilterImages
from convnet.callbacks.filter_grid import CELL, choose, filter_picture
from convnet.callbacks.render import LINE_HEIGHT, MAX_SIZE, text_width
from tests.callbacks.conftest import logged_images, read_events

GAP, TILE = 6, 36  # labelled_grid's gap; 3x3 kernels at the default tile_size
ROW = TILE + 3 + 5 + LINE_HEIGHT + GAP  # a tile, its norm bar and its number


def _logged(tmp_path, tag: str, step: int) -> tuple[np.ndarray, str]:
    events = read_events(tmp_path / "tb")
    (image,) = [event for event in logged_images(events)[tag] if event.step == step]
    pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
    return pixels, events.SummaryMetadata(tag).summary_description


def _tile(picture: np.ndarray, width: int, row: int, column: int) -> np.ndarray:
    y, x = row * ROW + GAP // 2, column * width + (width - TILE) // 2
    return picture[y : y + TILE, x : x + TILE].astype(int)


def test_a_known_first_layer_filter_is_found_in_the_logged_tile(
    small_vgg, fake_trainer, tmp_path
) -> None:
    conv = small_vgg.features[0]  # 8 filters 3x3x3
    checker = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, 1.0]])
    with torch.no_grad():
        conv.weight.mul_(1e-3)  # the others weakest, so these two come first
        conv.weight[0] = 0
        conv.weight[0, 0] = 0.3 * checker  # red only
        conv.weight[1] = 0.01  # all positive: white at its own scale
    trainer, pl_module = fake_trainer(small_vgg, step=5)
    FilterImages().draw(trainer, pl_module)
    trainer.loggers[0].experiment.flush()

    picture, description = _logged(tmp_path, "stage1/filters", step=5)
    width = TILE + GAP  # the numbers 0..7 are narrower than a tile
    red = _tile(picture, width, row=0, column=0)
    expected_red = np.kron(np.where(checker.numpy() > 0, 255, 0), np.ones((12, 12)))
    np.testing.assert_allclose(red[..., 0], expected_red, atol=1)
    np.testing.assert_allclose(red[..., 1:], 127, atol=1)  # zero weight: mid-grey
    white = _tile(picture, width, row=0, column=1)
    np.testing.assert_allclose(white, 255, atol=1)
    assert "`features.0`" in description and "Norms (index: value): 0: 0.9, 1: 0.052" in description


def test_filters_are_ranked_by_norm_and_channels_by_their_weight_in_them() -> None:
    weight = torch.zeros(6, 5, 3, 3)
    weight[4] = 1.0  # strongest filter
    weight[1, 2] = 2.0  # second: all its weight on input channel 2
    weight[3, 0, 0, 0] = 0.5
    choice = choose(weight, max_filters=3, max_in_channels=2)
    assert choice.filters.tolist() == [4, 1, 3]
    assert choice.channels.tolist() == [2, 0]
    torch.testing.assert_close(choice.norms[4], torch.tensor(45.0).sqrt())


def test_deeper_layers_are_a_row_per_filter_and_a_column_per_input_channel() -> None:
    weight = torch.zeros(4, 5, 3, 3)
    weight[2, 3, 1, 1] = -2.0  # filter 2 (the strongest), input channel 3 (its heaviest), centre
    weight[2, 0, 0, 0] = 1.0
    weight[0, 1] = 0.01
    picture = filter_picture(weight, "conv", colour=False, max_filters=2, max_in_channels=2)
    pixels = (picture * 255).round().permute(1, 2, 0).numpy()
    left = max(text_width("2"), text_width("0")) + 8
    factor = (CELL[1] - 3) // 3
    tile = 3 * factor

    def kernel(row: int, column: int) -> np.ndarray:
        y = LINE_HEIGHT + row * CELL[1] + (CELL[1] - tile) // 2
        x = left + column * CELL[0] + (CELL[0] - tile) // 2
        return pixels[y : y + tile, x : x + tile]

    centre = kernel(0, 0)  # filter 2 on input channel 3
    assert centre[factor : 2 * factor, factor : 2 * factor].max() == 0  # -max|w|: black
    assert (centre[:factor, :factor] == 128).all()  # 0 is mid-grey
    corner = kernel(0, 1)  # filter 2 on input channel 0: +1 of +-2, three quarters
    assert corner[:factor, :factor].min() == pytest.approx(191, abs=1)
    assert picture.shape[2] <= MAX_SIZE[0] and picture.shape[1] <= MAX_SIZE[1]


def test_shared_scale_uses_one_range_for_the_layer() -> None:
    weight = torch.zeros(2, 3, 3, 3)
    weight[0] = 1.0
    weight[1] = 0.5
    per_filter = filter_picture(weight, "conv1", colour=True, scale="per_filter")
    shared = filter_picture(weight, "conv1", colour=True, scale="shared")
    assert per_filter.shape == shared.shape
    width = TILE + GAP
    x = width + (width - TILE) // 2  # the second, weaker filter
    second = (slice(None), slice(GAP // 2, GAP // 2 + TILE), slice(x, x + TILE))
    assert per_filter[second].min() == pytest.approx(1.0)  # its own max: white
    assert shared[second].max() == pytest.approx(0.75, abs=1 / 255)  # half the layer's max


def test_the_change_since_the_start_shows_once_the_weights_moved(small_vgg, context) -> None:
    callback = FilterImages()
    callback.initial = {n: c.weight.detach().clone() for n, c in callback.convs(context).items()}
    assert [p.tag for p in callback.pictures(context)] == [
        "stage1/filters", "stage2/filters", "stage3/filters"
    ]  # fmt: skip
    with torch.no_grad():
        small_vgg.features[3].weight.mul_(1.5)  # stage 2's first conv: +50% everywhere
    pictures = {p.tag: p for p in callback.pictures(context)}
    assert list(pictures) == [
        "stage1/filters", "stage2/filters", "stage2/filters/change", "stage3/filters"
    ]  # fmt: skip
    change = pictures["stage2/filters/change"]
    assert "at step 0" in change.description and change.display_name.startswith("stage2")
    assert change.image.shape[1] == pictures["stage2/filters"].image.shape[1]  # the same rows


def test_a_layer_that_is_not_a_conv_is_refused_with_its_name(context) -> None:
    with pytest.raises(ValueError, match=r"callbacks\.filters\.layers.*features\.1"):
        FilterImages(layers=["features.1"]).pictures(context)
    with pytest.raises(ValueError, match=r"no module named 'nope'.*features\.0"):
        FilterImages(layers=["nope"]).pictures(context)
