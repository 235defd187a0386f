"""Batch augmentation and normalisation on uint8 batches."""

import pytest
import torch

from convnet.data.augment import (
    BatchTransform,
    CropSource,
    crop_and_flip,
    random_crop,
    random_flip,
    resize,
)


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


def test_crop_and_flip_crops_then_mirrors_each_image_with_the_draws_in_that_order() -> None:
    n, padding = 40, 2
    images = torch.randint(0, 256, (n, 3, 7, 9), generator=torch.Generator().manual_seed(0))
    out = crop_and_flip(images.to(torch.uint8), padding, True, torch.Generator().manual_seed(5))
    # The reference, one image at a time: the shifts drawn first, then the mirrored images.
    generator = torch.Generator().manual_seed(5)
    rows, cols = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    mirrored = torch.rand(n, generator=generator) < 0.5
    padded = torch.nn.functional.pad(images.to(torch.uint8), (padding,) * 4)
    for i in range(n):
        crop = padded[i, :, rows[i] : rows[i] + 7, cols[i] : cols[i] + 9]
        assert torch.equal(out[i], crop.flip(2) if mirrored[i] else crop), i
    assert 0 < int(mirrored.sum()) < n


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


def _window_counts(crops: torch.Tensor, image: torch.Tensor, padding: int) -> torch.Tensor:
    """Return how often each window of the zero-padded `image` (H, W) is among `crops`
    (N, H, W), counted per window in row-major order."""
    height, width = image.shape
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    side = 2 * padding + 1
    windows = torch.stack(
        [padded[dy : dy + height, dx : dx + width] for dy in range(side) for dx in range(side)]
    )  # (side*side, H, W)
    matches = (crops[:, None] == windows[None]).flatten(2).all(dim=2)  # (N, side*side)
    assert torch.equal(matches.sum(dim=1), torch.ones(len(crops), dtype=torch.long))
    return matches.sum(dim=0)


def test_crop_offsets_and_flip_rate_match_torchvision_in_distribution() -> None:
    from torchvision.transforms import v2

    size, padding, n = 8, 2, 4000
    # Every pixel different from the others and from the zero padding, so each crop
    # shows exactly one window.
    ramp = (torch.arange(size * size) + 1).view(size, size).to(torch.uint8)
    images = ramp.expand(n, 1, size, size).contiguous()

    ours = random_crop(images, padding, torch.Generator().manual_seed(0))[:, 0]
    torch.manual_seed(0)
    crop = v2.RandomCrop(size, padding=padding)
    theirs = torch.stack([crop(image) for image in images])[:, 0]
    uniform = torch.full(((2 * padding + 1) ** 2,), 1 / (2 * padding + 1) ** 2)
    ours_frequency = _window_counts(ours, ramp, padding) / n
    theirs_frequency = _window_counts(theirs, ramp, padding) / n
    # Both uniform over the 25 windows (offsets within the padding): each frequency within
    # ~4 standard errors of 1/25, and the two within a small total-variation distance.
    assert torch.allclose(ours_frequency, uniform, atol=0.012)
    assert torch.allclose(theirs_frequency, uniform, atol=0.012)
    assert (ours_frequency - theirs_frequency).abs().sum() / 2 < 0.06

    mirrored = ramp.flip(1)
    ours_rate = random_flip(images, torch.Generator().manual_seed(0))[:, 0] == mirrored
    ours_rate = ours_rate.flatten(1).all(dim=1).float().mean()
    flip = v2.RandomHorizontalFlip(p=0.5)
    theirs_rate = torch.stack([flip(image)[0] for image in images]) == mirrored
    theirs_rate = theirs_rate.flatten(1).all(dim=1).float().mean()
    assert abs(ours_rate - 0.5) < 0.03
    assert abs(theirs_rate - 0.5) < 0.03


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(("padding", "flip"), [(2, True), (3, False), (0, True)])
def test_a_crop_source_gives_crop_and_flip_of_the_gathered_images(
    padding: int, flip: bool, memory_format: torch.memory_format
) -> None:
    images = torch.randint(0, 256, (30, 3, 7, 9), dtype=torch.uint8)
    source = CropSource(images, padding, flip, memory_format)
    for seed in range(3):
        index = torch.randperm(30, generator=torch.Generator().manual_seed(seed))[:12]
        crops = source(index, torch.Generator().manual_seed(seed))
        gathered = images.index_select(0, index)
        reference = crop_and_flip(gathered, padding, flip, torch.Generator().manual_seed(seed))
        assert torch.equal(crops, reference)
        assert crops.is_contiguous(memory_format=memory_format)
    assert source.padded.nbytes == CropSource.bytes_for(images, padding, flip)


def test_normalising_a_channels_last_batch_gives_the_same_values_in_channels_last() -> None:
    transform = BatchTransform(mean=[0.1, 0.5, 0.9], std=[0.2, 0.3, 0.4])
    images = _batch().to(torch.uint8)
    expected = (images.float() / 255 - torch.tensor([0.1, 0.5, 0.9])[:, None, None]) / torch.tensor(
        [0.2, 0.3, 0.4]
    )[:, None, None]
    for _ in range(2):  # the second reuses the full-size operands made by the first
        out = transform.normalise(images.contiguous(memory_format=torch.channels_last))
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(out, expected, atol=1e-5)
    assert torch.equal(
        transform.normalise(images.contiguous(memory_format=torch.channels_last)),
        transform.normalise(images),
    )


def test_resize_is_antialiased_bilinear_rounded_to_uint8_and_the_same_in_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    images = _batch(10, 12).to(torch.uint8)
    resized = resize(images, (5, 7))
    assert resized.dtype == torch.uint8 and resized.shape == (10, 3, 5, 7)
    reference = torch.nn.functional.interpolate(
        images.float(), size=(5, 7), mode="bilinear", antialias=True
    )
    # torchvision's uint8 path rounds in fixed point: at most one level from the float one.
    assert (resized.float() - reference).abs().max() <= 1
    monkeypatch.setattr("convnet.data.augment.RESIZE_CHUNK", 3)
    assert torch.equal(resize(images, (5, 7)), resized)
    assert torch.equal(resize(images[4:6], (5, 7)), resized[4:6])  # each image on its own
