"""The one rendering helper: stated scales, grids, colours, captions."""

import pytest
import torch

from convnet.callbacks.render import (
    FONT_SIZE,
    LINE_HEIGHT,
    MAX_SIZE,
    colormap,
    display_scale,
    fit_text,
    image_grid,
    label_tiles,
    labelled_grid,
    rescale,
    save_png,
    text_width,
)


def test_per_tile_scale_stretches_each_tile_and_says_so() -> None:
    tiles = torch.stack([torch.linspace(0, 1, 4), torch.linspace(10, 20, 4)]).reshape(2, 1, 2, 2)
    scaled, stated = rescale(tiles, "per_tile")
    assert scaled.amin(dim=(1, 2, 3)).tolist() == [0, 0]
    assert scaled.amax(dim=(1, 2, 3)).tolist() == [1, 1]
    assert "each tile" in stated


def test_shared_symmetric_scale_keeps_zero_in_the_middle() -> None:
    tiles = torch.tensor([0.0, 2.0, -1.0, 4.0]).reshape(2, 1, 1, 2)
    scaled, stated = rescale(tiles, "shared", symmetric=True)
    assert scaled.flatten().tolist() == pytest.approx([0.5, 0.75, 0.375, 1.0])
    assert "±4" in stated


def test_a_wrong_scale_names_the_choices() -> None:
    with pytest.raises(ValueError, match="per_tile, shared"):
        rescale(torch.zeros(1, 1, 1, 1), "global")


def test_the_grid_upscales_with_nearest_neighbour_and_pads() -> None:
    tiles = torch.rand(6, 1, 3, 3)
    grid = image_grid(tiles, nrow=3, scale=None, upscale=4, padding=2)
    assert grid.shape == (3, 2 + 2 * (12 + 2), 2 + 3 * (12 + 2))
    torch.testing.assert_close(grid[0, 2:6, 2:6], tiles[0, 0, 0, 0].expand(4, 4))


def test_the_largest_picture_shows_at_70_percent_and_its_text_at_14_px() -> None:
    time_series, images = display_scale(*MAX_SIZE)
    assert min(time_series, images) >= 0.7
    assert FONT_SIZE * min(time_series, images) >= 14


def test_labelled_cells_are_as_wide_as_their_widest_label() -> None:
    labels = ["a", "a label wider than its tile"]
    grid = labelled_grid(torch.zeros(2, 3, 8, 8), labels, columns=2, gap=4)
    assert grid.shape == (3, 8 + LINE_HEIGHT + 4, 2 * (text_width(labels[1]) + 4))
    assert fit_text("a label wider than its tile", 60).endswith("…")
    assert text_width(fit_text("a label wider than its tile", 60)) <= 60


def test_colormap_runs_from_dark_purple_to_yellow() -> None:
    colours = colormap(torch.tensor([0.0, 1.0]).reshape(2, 1, 1, 1))
    assert colours[0, :, 0, 0].tolist() == pytest.approx([0.267, 0.005, 0.329])
    assert colours[1, :, 0, 0].tolist() == pytest.approx([0.993, 0.906, 0.144])


def test_labels_go_under_each_tile_and_pictures_save_as_png(tmp_path) -> None:
    labelled = label_tiles(torch.zeros(2, 3, 8, 8), ["a", "two\nlines"])
    assert labelled.shape == (2, 3, 8 + 2 * LINE_HEIGHT, 8)
    path = save_png(image_grid(labelled, scale=None), tmp_path / "x" / "grid.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
