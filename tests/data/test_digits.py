"""scikit-learn's digits as a data source."""

import torch

from convnet.data.digits import DigitsSource


def test_digits_are_split_70_15_15_without_overlap() -> None:
    splits = DigitsSource().load()
    sizes = [len(splits.train), len(splits.val), len(splits.test)]
    assert sum(sizes) == 1797
    assert abs(sizes[1] - 0.15 * 1797) < 12 and abs(sizes[2] - 0.15 * 1797) < 12
    assert splits.classes == [str(d) for d in range(10)]
    assert splits.train.images.shape[1:] == (1, 8, 8)
    assert splits.train.images.dtype == torch.uint8
    assert int(splits.train.images.max()) == 255
    # Every class is in every split (stratified).
    for split in (splits.train, splits.val, splits.test):
        assert torch.unique(split.labels).numel() == 10


def test_split_is_fixed_by_its_seed() -> None:
    a, b, c = DigitsSource(seed=0).load(), DigitsSource(seed=0).load(), DigitsSource(seed=1).load()
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)


def test_images_match_scikit_learn_pixels() -> None:
    from sklearn.datasets import load_digits

    reference = torch.from_numpy(load_digits().images).float() * 255 / 16
    splits = DigitsSource().load()
    image = splits.train.images[0, 0].float()
    matches = ((reference - image).abs().amax(dim=(1, 2)) <= 0.5).nonzero()
    assert matches.numel() >= 1
