"""Batch augmentation and normalisation on uint8 batches."""

import torch

from convnet.data.augment import BatchTransform, random_crop, random_flip


def _batch(n: int = 16, size: int = 8) -> torch.Tensor:
    return torch.randint(1, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0))


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image() -> None:
    images, padding = _batch(), 2
    cropped = random_crop(images, padding, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    offsets = set()
    for image, crop, pad in zip(images, cropped, padded, strict=True):
        windows = [
            (dy, dx)
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
            if torch.equal(pad[:, dy : dy + 8, dx : dx + 8], crop)
        ]
        assert windows, "each crop must be one window of its own padded image"
        assert image.shape == crop.shape
        offsets.add(windows[0])
    assert len(offsets) > 3  # shifts vary across the batch


def test_random_crop_with_zero_padding_changes_nothing() -> None:
    images = _batch()
    assert torch.equal(random_crop(images, 0, torch.Generator()), images)


def test_random_flip_mirrors_about_half_of_the_images() -> None:
    images = _batch(n=200)
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    same = [torch.equal(a, b) for a, b in zip(images, flipped, strict=True)]
    mirrored = [torch.equal(a.flip(2), b) for a, b in zip(images, flipped, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 60 < sum(mirrored) < 140


def test_normalisation_matches_the_formula() -> None:
    images = _batch()
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]
    out = BatchTransform(mean, std)(images, training=False)
    expected = (images.float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[
        :, None, None
    ]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)


def test_evaluation_batches_are_not_augmented() -> None:
    images = _batch()
    transform = BatchTransform([0.5] * 3, [0.5] * 3, crop_padding=4, flip=True)
    first = transform(images, training=False)
    assert torch.equal(first, transform(images, training=False))
    trained = transform(images, training=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(first, trained)


def test_images_are_resized_to_the_configured_size() -> None:
    transform = BatchTransform([0.0], [1.0], image_size=(16, 16))
    constant = torch.full((2, 1, 8, 8), 255, dtype=torch.uint8)
    out = transform(constant, training=False)
    assert out.shape == (2, 1, 16, 16)
    torch.testing.assert_close(out, torch.ones_like(out))
