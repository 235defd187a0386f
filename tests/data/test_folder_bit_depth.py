"""16-bit and float images in an image folder are scaled to 0..255, never clipped."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.data.datamodule import ImageDataModule
from convnet.data.folder import ImageFolderSource
from convnet.data.images import PixelFormatError, read_image

HEIGHT, WIDTH = 8, 32


def _ramp16(channels: int, seed: int = 0) -> np.ndarray:
    """Return uint16 (H, W) or (H, W, C) pixels spanning 0..65535, low and high bytes varied."""
    rng = np.random.default_rng(seed)
    shape = (HEIGHT, WIDTH) if channels == 1 else (HEIGHT, WIDTH, channels)
    values = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    values.flat[:2] = [0, 65535]  # both ends of the range
    return values


def _expected_8bit(values16: np.ndarray) -> np.ndarray:
    """Return the 8-bit values that 16-bit values stand for: value / 65535 * 255."""
    return values16.astype(np.float64) / 65535 * 255


def _write_png16(path: Path, pixels: np.ndarray) -> Path:
    """Write uint16 (H, W, 3) or (H, W, 4) pixels as a 16-bit RGB or RGBA PNG.

    PIL cannot write 16-bit colour PNGs, so the file is put together from the PNG
    specification's chunks: IHDR (bit depth 16, colour type 2 or 6), IDAT, IEND.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + checksum

    height, width, channels = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 16, {3: 2, 4: 6}[channels], 0, 0, 0)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)  # filter 0 per row
    content = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + content)
    return path


def test_16_bit_greyscale_png_is_scaled_not_clipped(tmp_path):
    values = _ramp16(channels=1)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)  # numpy uint16 -> PIL mode I;16 -> 16-bit PNG
    with Image.open(path) as opened:
        assert opened.mode == "I;16"

    image = read_image(str(path))

    assert image.dtype == torch.uint8 and image.shape == (3, HEIGHT, WIDTH)
    expected = np.rint(_expected_8bit(values))
    for channel in image.numpy():
        np.testing.assert_array_equal(channel, expected)
    assert (image == 255).float().mean() < 0.05  # clipping made over 99% of them 255


def test_32_bit_integer_greyscale_within_16_bits_is_scaled(tmp_path):
    values = _ramp16(channels=1, seed=1)
    path = tmp_path / "grey32.tif"
    Image.fromarray(values.astype(np.int32)).save(path)  # PIL mode I (PNG cannot hold it)
    with Image.open(path) as opened:
        assert opened.mode == "I"
    image = read_image(str(path))
    np.testing.assert_array_equal(image[0].numpy(), np.rint(_expected_8bit(values)))


def test_float_greyscale_from_zero_to_one_is_scaled(tmp_path):
    values = np.random.default_rng(2).random((HEIGHT, WIDTH), dtype=np.float32)
    values.flat[:2] = [0.0, 1.0]
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)  # PIL mode F
    with Image.open(path) as opened:
        assert opened.mode == "F"
    image = read_image(str(path))
    np.testing.assert_array_equal(image[1].numpy(), np.rint(values.astype(np.float64) * 255))


@pytest.mark.parametrize("channels", [3, 4], ids=["rgb", "rgba"])
def test_16_bit_colour_png_keeps_its_colours(tmp_path, channels):
    values = _ramp16(channels=channels, seed=channels)
    path = _write_png16(tmp_path / "colour16.png", values)

    image = read_image(str(path))

    assert image.shape == (3, HEIGHT, WIDTH)
    # PIL reduces 16-bit colour to 8 bits by the high byte, within one level of the scaling.
    expected = _expected_8bit(values[:, :, :3]).transpose(2, 0, 1)
    assert np.abs(image.numpy() - expected).max() <= 1
    assert (image == 255).float().mean() < 0.05


@pytest.mark.parametrize(
    ("pixels", "found"),
    [
        (np.full((4, 4), 70_000, dtype=np.int32), "from 70000 to 70000 (PIL mode I)"),
        (np.full((4, 4), -1, dtype=np.int32), "from -1 to -1 (PIL mode I)"),
        (np.full((4, 4), 3.5, dtype=np.float32), "from 3.5 to 3.5 (PIL mode F)"),
    ],
    ids=["above-16-bit", "negative", "float-above-one"],
)
def test_wide_pixels_outside_the_known_ranges_are_refused_with_the_range(tmp_path, pixels, found):
    path = tmp_path / "wide.tif"
    Image.fromarray(pixels).save(path)
    with pytest.raises(PixelFormatError) as error:
        read_image(str(path))
    message = str(error.value)
    assert f"image {path} has" in message and found in message
    assert "Convert the file to 8-bit or 16-bit" in message


def test_a_refused_image_is_named_in_error_mode(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(_ramp16(1)).save(tmp_path / name / "ok.png")
    Image.fromarray(np.full((4, 4), 3.5, dtype=np.float32)).save(tmp_path / "b" / "hdr.tif")
    splits = ImageFolderSource(tmp_path, image_size=4, val_fraction=0.0, on_bad_file="error").load()
    with pytest.raises(ValueError, match=r"cannot read image .*hdr\.tif .*from 3\.5 to 3\.5"):
        [splits.train[i] for i in range(len(splits.train))]


def test_a_batch_of_16_bit_pngs_is_not_saturated(tmp_path):
    written = {}
    for label, name in enumerate(("dark", "light")):  # sorted names: labels 0 and 1
        (tmp_path / name).mkdir()
        for i in range(4):
            # dark: 16-bit values around 1/4 of full scale, light around 3/4
            values = np.full((HEIGHT, HEIGHT), (1 + 2 * label) * 16384 + 997 * i, dtype=np.uint16)
            Image.fromarray(values).save(tmp_path / name / f"{i}.png")
            written[(label, i)] = values
    mean, std = [0.5] * 3, [0.25] * 3
    data = ImageDataModule(
        ImageFolderSource(tmp_path, image_size=HEIGHT, val_fraction=0.0),
        in_channels=3,
        num_classes=2,
        image_size=HEIGHT,
        mean=mean,
        std=std,
        batch_size=8,
    )
    data.setup()
    images, labels = next(iter(data.train_dataloader()))

    assert images.dtype == torch.uint8 and images.shape == (8, 3, HEIGHT, HEIGHT)
    assert (images == 255).float().mean() == 0
    expected = _expected_8bit(np.stack(list(written.values()))).mean()
    assert abs(images.double().mean().item() - expected) < 1
    dark, light = images[labels == 0].double().mean(), images[labels == 1].double().mean()
    assert 55 < dark < 75 and 185 < light < 205  # 1/4 and 3/4 of 255, told apart
    normalised, _ = data.on_after_batch_transfer((images, labels), 0)
    assert normalised.abs().max() < 2  # saturated 255s would all sit at (1 - 0.5) / 0.25
    assert normalised.std() > 0.5
