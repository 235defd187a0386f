"""ImageFolderSource on small folders of images written into tmp_path."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.data import folder as folder_module
from convnet.data.folder import ImageFolderSource


def _write_image(path: Path, pixels: np.ndarray, file_format: str | None = None) -> Path:
    """Write uint8 pixels (H, W) or (H, W, 3) to path and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=file_format)
    return path


def _solid(value: int, size: tuple[int, int] = (6, 8)) -> np.ndarray:
    return np.full((*size, 3), value, dtype=np.uint8)


def _make_classes(root: Path, per_class: dict[str, int]) -> None:
    """Write per_class[name] small solid PNGs into root/name/, a different shade each."""
    for class_index, (name, count) in enumerate(per_class.items()):
        for i in range(count):
            _write_image(root / name / f"{i}.png", _solid(10 * class_index + i))


def _items(dataset) -> list[tuple[torch.Tensor, int]]:
    return [dataset[i] for i in range(len(dataset))]


def test_train_val_layout_gives_rgb_uint8_items_of_image_size(tmp_path):
    _make_classes(tmp_path / "train", {"cat": 3, "dog": 2})
    _make_classes(tmp_path / "val", {"cat": 1, "dog": 1})
    splits = ImageFolderSource(tmp_path, image_size=[4, 5]).load()

    assert splits.classes == ["cat", "dog"]
    assert (len(splits.train), len(splits.val)) == (5, 2)
    assert splits.test is None
    for image, label in _items(splits.train) + _items(splits.val):
        assert image.dtype == torch.uint8
        assert image.shape == (3, 4, 5)
        assert isinstance(label, int)
    assert [label for _, label in _items(splits.train)] == [0, 0, 0, 1, 1]
    assert splits.train.targets == [0, 0, 0, 1, 1]


def test_test_folder_becomes_the_test_split(tmp_path):
    _make_classes(tmp_path / "train", {"cat": 2, "dog": 2})
    _make_classes(tmp_path / "val", {"cat": 1, "dog": 1})
    _make_classes(tmp_path / "test", {"cat": 1, "dog": 3})
    splits = ImageFolderSource(tmp_path, image_size=4).load()
    assert [label for _, label in _items(splits.test)] == [0, 1, 1, 1]


def test_val_folder_missing_a_class_keeps_the_train_labels_and_warns(tmp_path, caplog):
    _make_classes(tmp_path / "train", {"cat": 2, "dog": 2})
    _make_classes(tmp_path / "val", {"dog": 2})
    with caplog.at_level(logging.WARNING):
        splits = ImageFolderSource(tmp_path, image_size=4).load()
    assert splits.val.targets == [1, 1]
    assert "no folder for 1 of the 2 classes (cat)" in caplog.text


def test_train_folder_without_val_folder_is_split(tmp_path):
    _make_classes(tmp_path / "train", {"cat": 5, "dog": 5})
    splits = ImageFolderSource(tmp_path, image_size=4, val_fraction=0.2).load()
    assert (len(splits.train), len(splits.val)) == (8, 2)


def test_single_folder_is_split_seeded_disjoint_and_stratified(tmp_path):
    _make_classes(tmp_path, {"a": 10, "b": 10, "c": 5})

    def load(seed: int):
        return ImageFolderSource(tmp_path, image_size=4, val_fraction=0.2, split_seed=seed).load()

    first, again, other = load(0), load(0), load(1)
    assert first.val.samples == again.val.samples
    assert first.val.samples != other.val.samples
    assert not {path for path, _ in first.train.samples} & {path for path, _ in first.val.samples}
    assert len(first.train) + len(first.val) == 25
    assert Counter(first.val.targets) == {0: 2, 1: 2, 2: 1}
    assert first.test is None


def test_pixels_round_trip_exactly_at_the_image_size(tmp_path):
    rng = np.random.default_rng(0)
    known = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    _write_image(tmp_path / "train" / "a" / "known.png", known)
    _write_image(tmp_path / "train" / "b" / "other.png", _solid(1))
    _make_classes(tmp_path / "val", {"a": 1, "b": 1})
    image, label = ImageFolderSource(tmp_path, image_size=[6, 8]).load().train[0]
    assert label == 0
    assert torch.equal(image, torch.from_numpy(known).permute(2, 0, 1))


def test_greyscale_png_becomes_three_equal_channels(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    _write_image(tmp_path / "a" / "grey.png", grey)
    _make_classes(tmp_path, {"b": 1})
    splits = ImageFolderSource(tmp_path, image_size=[6, 8], val_fraction=0.0).load()
    image, _ = splits.train[0]
    assert image.shape == (3, 6, 8)
    for channel in image:
        assert torch.equal(channel, torch.from_numpy(grey))


def test_images_are_resized_to_image_size(tmp_path):
    _write_image(tmp_path / "a" / "wide.png", _solid(200, size=(20, 30)))
    _write_image(tmp_path / "b" / "tall.jpg", _solid(50, size=(31, 9)))
    splits = ImageFolderSource(tmp_path, image_size=8, val_fraction=0.0).load()
    wide, tall = splits.train[0][0], splits.train[1][0]
    assert wide.shape == tall.shape == (3, 8, 8)
    assert torch.all(wide == 200)


def test_bmp_and_tiff_images_are_read_exactly(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    _write_image(tmp_path / "a" / "one.bmp", pixels)
    _write_image(tmp_path / "b" / "two.tiff", pixels)
    splits = ImageFolderSource(tmp_path, image_size=[5, 7], val_fraction=0.0).load()
    expected = torch.from_numpy(pixels).permute(2, 0, 1)
    assert all(torch.equal(image, expected) for image, _ in _items(splits.train))


def test_other_files_and_hidden_folders_are_ignored(tmp_path):
    _make_classes(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "a" / "README.txt").write_text("notes")
    _make_classes(tmp_path / ".ipynb_checkpoints", {"x": 1})
    _write_image(tmp_path / "b" / ".hidden.png", _solid(3))
    splits = ImageFolderSource(tmp_path, image_size=4, val_fraction=0.0).load()
    assert splits.classes == ["a", "b"]
    assert len(splits.train) == 4


def test_extensions_choose_which_files_are_images(tmp_path):
    _make_classes(tmp_path, {"a": 2, "b": 2})
    _write_image(tmp_path / "a" / "extra.jpg", _solid(9))
    png_only = ImageFolderSource(tmp_path, 4, val_fraction=0.0, extensions=["png"]).load()
    assert len(png_only.train) == 4


def _write_bad_files(class_dir: Path) -> tuple[Path, Path]:
    """Write a truncated PNG and a text file named like an image into class_dir."""
    noise = np.random.default_rng(2).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    truncated = _write_image(class_dir / "truncated.png", noise)
    content = truncated.read_bytes()
    truncated.write_bytes(content[: len(content) // 2])  # a valid header, half the pixels
    not_an_image = class_dir / "notes.png"
    not_an_image.write_text("this is not an image")
    return truncated, not_an_image


def test_unreadable_files_are_skipped_up_front_with_a_count(tmp_path, caplog):
    _make_classes(tmp_path, {"a": 3, "b": 3})
    truncated, not_an_image = _write_bad_files(tmp_path / "a")
    with caplog.at_level(logging.WARNING, logger="convnet.data.folder"):
        splits = ImageFolderSource(tmp_path, image_size=4, val_fraction=0.0).load()
    assert len(splits.train) == 6
    assert "skipping 2 unreadable image file(s)" in caplog.text
    assert str(truncated) in caplog.text and str(not_an_image) in caplog.text


def test_unreadable_files_fail_up_front_naming_them_in_error_mode(tmp_path):
    _make_classes(tmp_path, {"a": 3, "b": 3})
    truncated, _ = _write_bad_files(tmp_path / "b")
    source = ImageFolderSource(tmp_path, image_size=4, on_bad_file="error")
    with pytest.raises(ValueError, match="2 unreadable image file") as error:
        source.load()
    assert str(truncated) in str(error.value)


def test_unreadable_files_found_while_reading_are_replaced(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(folder_module, "HEADER_CHECK_LIMIT", 0)  # as for a large folder
    _make_classes(tmp_path, {"a": 3, "b": 3})
    truncated, not_an_image = _write_bad_files(tmp_path / "a")
    splits = ImageFolderSource(tmp_path, image_size=4, val_fraction=0.0).load()
    assert len(splits.train) == 8
    with caplog.at_level(logging.WARNING, logger="convnet.data.folder"):
        items = _items(splits.train)
    assert all(image.shape == (3, 4, 4) for image, _ in items)
    assert "2 file(s) skipped so far" in caplog.text
    assert str(truncated) in caplog.text and str(not_an_image) in caplog.text


def test_unreadable_file_found_while_reading_is_named_in_error_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(folder_module, "HEADER_CHECK_LIMIT", 0)
    _make_classes(tmp_path, {"a": 2, "b": 2})
    not_an_image = tmp_path / "b" / "zz.jpg"
    not_an_image.write_text("not a jpeg")
    splits = ImageFolderSource(tmp_path, 4, val_fraction=0.0, on_bad_file="error").load()
    with pytest.raises(ValueError, match="cannot read image") as error:
        _items(splits.train)
    assert str(not_an_image) in str(error.value)


def test_missing_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist") as error:
        ImageFolderSource(tmp_path / "nowhere", image_size=4).load()
    assert str(tmp_path / "nowhere") in str(error.value)


def test_empty_root_is_refused(tmp_path):
    (tmp_path / ".DS_Store").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        ImageFolderSource(tmp_path, image_size=4).load()


def test_root_without_class_folders_is_refused(tmp_path):
    _write_image(tmp_path / "loose.png", _solid(1))
    with pytest.raises(ValueError, match="has no class folders") as error:
        ImageFolderSource(tmp_path, image_size=4).load()
    assert "loose.png" in str(error.value)


def test_a_single_class_is_refused(tmp_path):
    _make_classes(tmp_path / "train", {"only": 3})
    with pytest.raises(ValueError, match=r"only one class folder \(only\)"):
        ImageFolderSource(tmp_path, image_size=4).load()


def test_val_classes_missing_from_train_are_named(tmp_path):
    _make_classes(tmp_path / "train", {"cat": 2, "dog": 2})
    _make_classes(tmp_path / "val", {"cat": 1, "emu": 1, "yak": 1})
    with pytest.raises(ValueError, match=r"not in .*train: emu, yak"):
        ImageFolderSource(tmp_path, image_size=4).load()


def test_folders_without_image_files_are_refused(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "labels.csv").write_text("x")
    with pytest.raises(ValueError, match=r"no image files .*\{'.csv': 2\}"):
        ImageFolderSource(tmp_path, image_size=4).load()


def test_a_class_folder_without_images_is_named(tmp_path):
    _make_classes(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="without image files: empty"):
        ImageFolderSource(tmp_path, image_size=4).load()


@pytest.mark.parametrize("image_size", [0, [4], [4, -1], [4.5, 4], "32"])
def test_bad_image_size_is_refused(image_size, tmp_path):
    with pytest.raises(ValueError, match=r"data\.source\.image_size"):
        ImageFolderSource(tmp_path, image_size=image_size)


def test_bad_on_bad_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="on_bad_file must be one of skip, error"):
        ImageFolderSource(tmp_path, image_size=4, on_bad_file="ignore")


@pytest.mark.parametrize("val_fraction", [-0.5, 1.0])
def test_bad_val_fraction_is_refused(val_fraction, tmp_path):
    with pytest.raises(ValueError, match="val_fraction"):
        ImageFolderSource(tmp_path, image_size=4, val_fraction=val_fraction)
