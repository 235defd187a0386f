"""An image folder describes itself: class count, channels, size, mean and std from the files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convnet.build import build_network
from convnet.checks import ConfigError
from convnet.config import validate
from convnet.data import describe
from convnet.data.describe import complete_data_config, image_size_for, measure
from tests.compose import compose_config

ROOT_ONLY = ["data=imagefolder", "model=small"]


def _write(path: Path, pixels: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return str(path)


def _grey_folder(root: Path, sizes: dict[str, tuple[int, int]], per_class: int = 4) -> np.ndarray:
    """Write random greyscale PNGs into root/train/<class>/ and root/val/<class>/; return the
    training images' pixels (in 0..1), flattened."""
    rng = np.random.default_rng(0)
    pixels = []
    for name, size in sizes.items():
        for i in range(per_class):
            image = rng.integers(0, 256, size, dtype=np.uint8)
            _write(root / "train" / name / f"{i}.png", image)
            pixels.append(image.ravel() / 255)
        _write(root / "val" / name / "0.png", rng.integers(0, 256, size, dtype=np.uint8))
    return np.concatenate(pixels)


def _config(tmp_path: Path, root: Path, *overrides: str):
    return compose_config(
        "train",
        [*ROOT_ONLY, f"data.source.root={root}", f"paths.cache_dir={tmp_path}/cache", *overrides],
        tmp_path,
    )


def test_measure_gives_numpys_mean_and_std_and_the_median_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(4, 6), (8, 6), (9, 12)]]
    paths = [_write(tmp_path / f"{i}.png", image) for i, image in enumerate(images)]
    stats = measure(paths, channels=None)
    values = np.concatenate([image.reshape(-1, 3) for image in images]) / 255
    np.testing.assert_allclose(stats.mean, values.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, values.std(axis=0), rtol=1e-9)
    assert stats.median_size == (8, 6)
    assert stats.grey is False and stats.images == 3


def test_grey_is_a_greyscale_mode_or_rgb_with_equal_channels(tmp_path: Path) -> None:
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    as_l = _write(tmp_path / "l.png", grey)
    as_rgb = _write(tmp_path / "rgb.png", np.repeat(grey[:, :, None], 3, axis=2))
    sixteen = tmp_path / "i16.png"
    Image.fromarray(grey.astype(np.uint16) * 257).save(sixteen)  # 0..65535, mode I;16
    stats = measure([as_l, as_rgb, str(sixteen)], channels=None)
    assert stats.grey
    np.testing.assert_allclose(stats.mean, [grey.mean() / 255] * 3, rtol=1e-12)
    colour = np.zeros((6, 8, 3), dtype=np.uint8)
    colour[..., 0] = 200
    assert not measure([as_l, _write(tmp_path / "red.png", colour)], channels=None).grey


@pytest.mark.parametrize(
    ("median", "size"),
    [
        ((8, 8), [32, 32]),
        ((28, 28), [32, 32]),
        ((20, 40), [32, 64]),
        ((64, 48), [64, 48]),
        ((375, 500), [224, 299]),
    ],
)
def test_image_size_is_the_median_with_its_shorter_side_in_32_to_224(median, size) -> None:
    assert image_size_for(median)[0] == size


def test_a_greyscale_folder_fills_every_null_data_key(tmp_path: Path, caplog) -> None:
    root = tmp_path / "digits"
    pixels = _grey_folder(root, {"a": (8, 8), "b": (8, 8), "c": (10, 8)})
    cfg = _config(tmp_path, root)
    assert cfg.data.num_classes is None and cfg.data.mean is None
    with caplog.at_level(logging.INFO):
        complete_data_config(cfg)
    assert cfg.data.num_classes == 3
    assert cfg.data.in_channels == 1 and cfg.data.source.channels == 1
    assert list(cfg.data.image_size) == [32, 32]
    assert cfg.data.crop_padding == 2  # 1/16 of 32
    assert cfg.data.mean[0] == pytest.approx(pixels.mean(), abs=5e-5)
    assert cfg.data.std[0] == pytest.approx(pixels.std(), abs=5e-5)
    assert cfg.model.num_classes == 3 and cfg.model.in_channels == 1  # the model follows
    # The summary says what was taken and why: counts, splits, each key.
    assert "3 classes, training images of each: a 4, b 4, c 4" in caplog.text
    assert "splits: 12 train, 3 val, no test split" in caplog.text
    assert "data.in_channels=1: every training image is greyscale" in caplog.text


def test_colour_images_give_three_channels_and_given_keys_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    rng = np.random.default_rng(2)
    for name in ("cat", "dog"):
        for i in range(3):
            _write(root / name / f"{i}.png", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    cfg = _config(tmp_path, root, "data.image_size=[16,16]", "data.source.val_fraction=0.34")
    complete_data_config(cfg)
    assert cfg.data.in_channels == 3 and len(cfg.data.mean) == 3 and len(cfg.data.std) == 3
    assert list(cfg.data.image_size) == [16, 16] and cfg.data.crop_padding == 1


def test_a_channel_of_one_value_everywhere_is_normalised_by_one_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "reds"
    rng = np.random.default_rng(3)
    for name in ("dark", "light"):
        for i in range(3):
            red = np.zeros((8, 8, 3), dtype=np.uint8)
            red[..., 0] = rng.integers(0, 256, (8, 8))  # green and blue: 0 everywhere
            _write(root / name / f"{i}.png", red)
    cfg = _config(tmp_path, root, "data.source.val_fraction=0.34")
    with caplog.at_level(logging.WARNING):
        complete_data_config(cfg)
    validate(cfg)  # a std of 0 would be refused here
    assert list(cfg.data.std)[1:] == [1.0, 1.0] and 0 < cfg.data.std[0] < 1
    assert "channels [1, 2] have one value in every pixel (std 0)" in caplog.text


def test_greyscale_images_train_as_rgb_when_asked(tmp_path: Path) -> None:
    root = tmp_path / "digits"
    pixels = _grey_folder(root, {"a": (8, 8), "b": (8, 8)})
    cfg = _config(tmp_path, root, "data.in_channels=3")
    complete_data_config(cfg)
    assert cfg.data.in_channels == 3
    np.testing.assert_allclose(list(cfg.data.mean), [pixels.mean()] * 3, atol=5e-5)


def test_a_given_mean_sets_the_channel_count(tmp_path: Path) -> None:
    root = tmp_path / "digits"
    _grey_folder(root, {"a": (8, 8), "b": (8, 8)})
    cfg = _config(tmp_path, root, "data.mean=[0.5,0.5,0.5]", "data.std=[0.2,0.2,0.2]")
    complete_data_config(cfg)
    assert cfg.data.in_channels == 3 and list(cfg.data.mean) == [0.5, 0.5, 0.5]


def test_a_class_count_that_disagrees_with_the_folders_names_both(tmp_path: Path) -> None:
    root = tmp_path / "digits"
    _grey_folder(root, {"a": (8, 8), "b": (8, 8), "c": (8, 8)})
    cfg = _config(tmp_path, root, "data.num_classes=5")
    with pytest.raises(
        ConfigError, match=r"data.num_classes=5 but .* has 3 class folders \(a, b, c\)"
    ):
        complete_data_config(cfg)


def test_a_model_key_that_disagrees_with_the_folders_is_refused_once_they_are_read(
    tmp_path: Path,
) -> None:
    root = tmp_path / "digits"
    _grey_folder(root, {"a": (8, 8), "b": (8, 8), "c": (8, 8)})
    cfg = _config(tmp_path, root, "model.num_classes=5", "model.in_channels=3")
    validate(cfg)  # the data keys are null until the folder is read: nothing to compare
    complete_data_config(cfg)
    with pytest.raises(ConfigError) as error:
        build_network(cfg)
    message = str(error.value)
    assert "model.num_classes=5 but data.num_classes=3" in message
    assert "model.in_channels=3 but data.in_channels=1" in message


def test_a_data_set_that_cannot_describe_itself_asks_for_the_key(tmp_path: Path) -> None:
    cfg = compose_config("train", ["data=digits", "data.num_classes=null"], tmp_path)
    with pytest.raises(ConfigError, match=r"data\.num_classes is null.*DigitsSource"):
        complete_data_config(cfg)


def test_the_statistics_are_read_once_then_cached(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "digits"
    _grey_folder(root, {"a": (8, 8), "b": (8, 8)})
    first = _config(tmp_path, root)
    complete_data_config(first)
    [cached] = (tmp_path / "cache" / "folder-stats").glob("*.json")

    def never(*args, **kwargs):
        raise AssertionError("the folder was read again")

    monkeypatch.setattr(describe, "measure", never)
    second = _config(tmp_path, root)
    complete_data_config(second)
    assert list(second.data.mean) == list(first.data.mean)

    # A damaged cache file is measured again, never trusted.
    cached.write_text("{not json")
    monkeypatch.undo()
    third = _config(tmp_path, root)
    complete_data_config(third)
    assert list(third.data.mean) == list(first.data.mean)
    assert json.loads(cached.read_text())["images"] == 8

    # A changed file changes the key: the new pixels are measured.
    _write(root / "train" / "a" / "0.png", np.full((8, 8), 255, dtype=np.uint8))
    fourth = _config(tmp_path, root)
    complete_data_config(fourth)
    assert fourth.data.mean[0] > first.data.mean[0]


def test_a_resumed_run_takes_the_values_of_its_first_session(tmp_path: Path) -> None:
    root = tmp_path / "digits"
    _grey_folder(root, {"a": (8, 8), "b": (8, 8)})
    cfg = _config(tmp_path, root)
    stored = {
        "num_classes": 2,
        "in_channels": 1,
        "image_size": [24, 24],
        "mean": [0.1],
        "std": [0.3],
    }
    complete_data_config(cfg, stored)
    assert list(cfg.data.image_size) == [24, 24] and list(cfg.data.mean) == [0.1]
    assert not (tmp_path / "cache").exists()  # the folder was not read
    with pytest.raises(ConfigError, match=r"data\.mean"):
        complete_data_config(_config(tmp_path, root), {**stored, "mean": ["os.system"]})


def test_images_are_read_with_the_inferred_channel_count(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    root = tmp_path / "digits"
    _grey_folder(root, {"a": (8, 8), "b": (10, 8)})
    cfg = _config(tmp_path, root)
    complete_data_config(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    image, _ = datamodule.splits.train[0]
    # Median 9x8 (half the images are 8 high, half 10), scaled by 32/8.
    assert list(cfg.data.image_size) == [36, 32]
    assert tuple(image.shape) == (1, 36, 32)
