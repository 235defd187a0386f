"""The procedural shapes data set: determinism, balance, geometry and difficulty."""

import math

import pytest
import torch

from convnet.data.shapes import CLASSES, ShapesSource, _coverage, make_split


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


# Area of each shape in its own frame (the shape fits the unit disk), by geometry.
AREAS = {
    "circle": math.pi * 0.85**2,
    "ring": math.pi * (0.9**2 - 0.55**2),
    "square": (2 * 0.68) ** 2,
    "frame": (2 * 0.72) ** 2 - (2 * 0.4) ** 2,
    "triangle": 3 * math.sqrt(3) * 0.475**2,  # equilateral, inradius 0.475
    "cross": 2 * (2 * 0.24) * (2 * 0.85) - (2 * 0.24) ** 2,
}


@pytest.mark.parametrize("name", list(AREAS))
def test_drawn_shape_covers_its_geometric_area(name: str) -> None:
    scale, fine = 0.5, 128
    label = torch.tensor([CLASSES.index(name)])
    coverage = _coverage(
        label, torch.zeros(1, 2), torch.tensor([scale]), torch.tensor([0.3]), fine, supersample=2
    )
    # The image spans [-1, 1]^2 (area 4); the shape's area scales with scale^2.
    expected = AREAS[name] * scale**2 / 4
    assert coverage.mean().item() == pytest.approx(expected, rel=0.03)


@pytest.mark.slow
# lbfgs stops before full convergence; fitting longer only fits the training set harder.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_logistic_regression_on_raw_pixels_stays_below_30_percent() -> None:
    from sklearn.linear_model import LogisticRegression

    splits = ShapesSource(num_train=6000, num_val=2000, num_test=0).load()
    train = splits.train.images.flatten(1).float().numpy() / 255
    val = splits.val.images.flatten(1).float().numpy() / 255
    mean, std = train.mean(0), train.std(0) + 1e-6
    classifier = LogisticRegression(max_iter=100, C=0.05)  # fits train to ~0.83 already
    classifier.fit((train - mean) / std, splits.train.labels.numpy())
    accuracy = classifier.score((val - mean) / std, splits.val.labels.numpy())
    assert accuracy < 0.30
    assert accuracy > 0.05  # it did fit something: chance is 0.10
