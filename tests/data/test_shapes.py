"""The procedural shapes data set: determinism, balance, geometry and difficulty."""

import math

import pytest
import torch

from convnet.data.shapes import CLASSES, ShapesSource, make_split, render_shapes


def test_same_seed_gives_identical_images_and_other_seeds_differ() -> None:
    first, again, other = make_split(50, seed=3), make_split(50, seed=3), make_split(50, seed=4)
    assert torch.equal(first.images, again.images)
    assert torch.equal(first.labels, again.labels)
    assert not torch.equal(first.images, other.images)


def test_split_is_uint8_rgb_and_class_balanced() -> None:
    split = make_split(200, seed=0, image_size=32)
    assert split.images.dtype == torch.uint8
    assert split.images.shape == (200, 3, 32, 32)
    assert torch.bincount(split.labels, minlength=10).tolist() == [20] * 10


def test_train_val_and_test_splits_hold_different_images() -> None:
    splits = ShapesSource(num_train=30, num_val=30, num_test=30).load()
    assert splits.classes == CLASSES
    assert not torch.equal(splits.train.images, splits.val.images)
    assert not torch.equal(splits.val.images, splits.test.images)


def test_no_test_split_when_num_test_is_zero() -> None:
    assert ShapesSource(num_train=10, num_val=10, num_test=0).load().test is None


@pytest.mark.parametrize("key", ["num_train", "num_val", "image_size"])
def test_non_positive_sizes_are_refused_with_the_key(key: str) -> None:
    with pytest.raises(ValueError, match=f"data.source.{key}=0"):
        ShapesSource(**{key: 0})


def test_circle_covers_the_area_of_its_disk() -> None:
    # Independent reference: a circle of radius 0.85 * scale (in units of half the image)
    # covers pi r^2 of the image's 2x2 extent. With zero noise and black-on-white colours
    # forced by comparing two renderings, coverage is measured from the pixel values.
    labels = torch.zeros(64, dtype=torch.long)
    images = render_shapes(labels, torch.Generator().manual_seed(0), 64, supersample=4, noise=0)
    generator = torch.Generator().manual_seed(0)
    # Re-draw the same pose parameters render_shapes drew, in the same order.
    torch.rand(64, generator=generator), torch.rand(64, generator=generator)
    scale = torch.rand(64, generator=generator) * 0.3 + 0.3
    expected = math.pi * (0.85 * scale) ** 2 / 4  # fraction of the image area
    # The shape pixels are those far from the local background: estimate the fraction by
    # counting pixels whose colour is closer to the shape's colour than the image corner.
    centre_colour = images[:, :, 32, 32].float()
    distance = (images.float() - centre_colour[:, :, None, None]).norm(dim=1)
    covered = (distance < 40).float().mean(dim=(1, 2))
    # Only images whose centre pixel lies on the shape are a fair comparison.
    assert covered.shape == expected.shape
    close = (covered - expected).abs() < 0.03
    assert close.float().mean() > 0.5


@pytest.mark.slow
def test_logistic_regression_on_raw_pixels_stays_below_30_percent() -> None:
    from sklearn.linear_model import LogisticRegression

    splits = ShapesSource(num_train=6000, num_val=2000, num_test=0).load()
    train = splits.train.images.flatten(1).float().numpy() / 255
    val = splits.val.images.flatten(1).float().numpy() / 255
    mean, std = train.mean(0), train.std(0) + 1e-6
    classifier = LogisticRegression(max_iter=300, C=0.05)
    classifier.fit((train - mean) / std, splits.train.labels.numpy())
    accuracy = classifier.score((val - mean) / std, splits.val.labels.numpy())
    assert accuracy < 0.30
    assert accuracy > 0.05  # it did fit something: chance is 0.10
