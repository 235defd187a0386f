"""Filter pictures: known weights show up as known pixels in the logged TensorBoard image."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.callbacks import FilterImages
from convnet.callbacks.filters import filter_picture
from tests.callbacks.conftest import read_events

PAD, TILE = 2, 24  # make_grid's padding; 3x3 kernels at the default tile_size


def _logged(tmp_path, tag: str, step: int) -> np.ndarray:
    events = read_events(tmp_path / "tb")
    (image,) = [event for event in events.Images(tag) if event.step == step]
    return np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))


def _tile(picture: np.ndarray, rows: int, row: int, column: int) -> np.ndarray:
    # The grid sits below the caption, at the bottom of the picture.
    top = picture.shape[0] - (PAD + rows * (TILE + PAD))
    y, x = top + PAD + row * (TILE + PAD), PAD + column * (TILE + PAD)
    return picture[y : y + TILE, x : x + TILE].astype(int)


def test_a_known_first_layer_filter_is_found_in_the_logged_tile(
    small_vgg, fake_trainer, tmp_path
) -> None:
    conv = small_vgg.features[0]  # 8 filters 3x3x3
    checker = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, 1.0]])
    with torch.no_grad():
        conv.weight[0] = 0
        conv.weight[0, 0] = 0.3 * checker  # red only
        conv.weight[1] = 0.01  # all positive: white at its own scale
    trainer, pl_module = fake_trainer(small_vgg, step=5)
    FilterImages().draw(trainer, pl_module)
    trainer.loggers[0].experiment.flush()

    picture = _logged(tmp_path, "stage1/filters", step=5)
    red = _tile(picture, rows=1, row=0, column=0)
    expected_red = np.kron(np.where(checker.numpy() > 0, 255, 0), np.ones((8, 8)))
    np.testing.assert_allclose(red[..., 0], expected_red, atol=1)
    np.testing.assert_allclose(red[..., 1:], 127, atol=1)  # zero weight: mid-grey
    white = _tile(picture, rows=1, row=0, column=1)
    np.testing.assert_allclose(white, 255, atol=1)


def test_deeper_layers_are_a_row_per_filter_and_a_column_per_input_channel() -> None:
    weight = torch.zeros(4, 5, 3, 3)
    weight[2, 3, 1, 1] = -2.0  # filter 2, input channel 3, centre
    weight[2, 0, 0, 0] = 1.0
    picture = filter_picture(weight, "conv", colour=False, scale="per_filter")
    pixels = (picture * 255).round().permute(1, 2, 0).numpy()
    tile = _tile(pixels, rows=4, row=2, column=3)
    assert tile[8:16, 8:16].max() == 0  # -max|w| of the filter: black
    assert (tile[:8, :8] == 128).all()  # 0 is mid-grey
    corner = _tile(pixels, rows=4, row=2, column=0)
    assert corner[:8, :8].min() == pytest.approx(191, abs=1)  # +1 of +-2: three quarters


def test_shared_scale_uses_one_range_for_the_layer() -> None:
    weight = torch.zeros(2, 3, 3, 3)
    weight[0] = 1.0
    weight[1] = 0.5
    per_filter = filter_picture(weight, "conv1", colour=True, scale="per_filter")
    shared = filter_picture(weight, "conv1", colour=True, scale="shared")
    assert per_filter.shape == shared.shape
    second = (slice(None), slice(-TILE - PAD, -PAD), slice(PAD + TILE + PAD, PAD + 2 * TILE + PAD))
    assert per_filter[second].min() == pytest.approx(1.0)  # its own max: white
    assert shared[second].max() == pytest.approx(0.75)  # half the layer's max


def test_a_layer_that_is_not_a_conv_is_refused_with_its_name(context) -> None:
    with pytest.raises(ValueError, match=r"callbacks\.filters\.layers.*features\.1"):
        FilterImages(layers=["features.1"]).pictures(context)
    with pytest.raises(ValueError, match=r"no module named 'nope'.*features\.0"):
        FilterImages(layers=["nope"]).pictures(context)
