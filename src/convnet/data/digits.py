"""scikit-learn's handwritten digits: 1,797 real 8x8 greyscale images that ship on disk."""

from __future__ import annotations

import torch

from convnet.data.splits import Splits, TensorSplit, stratified_split


class DigitsSource:
    """sklearn.datasets.load_digits split 70/15/15 into train/val/test by a fixed seed."""

    def __init__(self, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0):
        for key, value in [("val_fraction", val_fraction), ("test_fraction", test_fraction)]:
            if not 0 < value < 1:
                raise ValueError(f"data.source.{key}={value} must be between 0 and 1")
        if val_fraction + test_fraction >= 1:
            raise ValueError(
                f"data.source.val_fraction + test_fraction = {val_fraction + test_fraction} "
                "leaves no training data; keep the sum below 1"
            )
        self.fractions = [1 - val_fraction - test_fraction, val_fraction, test_fraction]
        self.seed = seed

    def prepare(self) -> None:
        """Nothing to fetch: the digits ship with scikit-learn."""

    def load(self) -> Splits:
        """Return the splits as uint8 (N, 1, 8, 8) images (0..16 scaled to 0..255)."""
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images * (255 / 16)).round().to(torch.uint8)[:, None]
        labels = torch.from_numpy(digits.target).long()
        train, val, test = (
            TensorSplit(images[index], labels[index])
            for index in stratified_split(labels, self.fractions, self.seed)
        )
        return Splits(train, val, test, classes=[str(name) for name in digits.target_names])
