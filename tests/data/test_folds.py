"""k-fold cross-validation in the DataModule: data.fold / data.num_folds / data.fold_seed."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from convnet.data import ImageDataModule
from convnet.data.splits import Splits, TensorSplit

CLASSES = ["a", "b", "c"]


class NumberedSource:
    """Images that carry their own index in two pixels, so every image is identifiable."""

    def __init__(self, train_per_class: int = 14, val_per_class: int = 3) -> None:
        self.train_per_class = train_per_class
        self.val_per_class = val_per_class

    def prepare(self) -> None:
        """Nothing to fetch."""

    def _split(self, per_class: int, start: int) -> TensorSplit:
        count = per_class * len(CLASSES)
        index = torch.arange(start, start + count)
        images = torch.zeros(count, 1, 4, 4, dtype=torch.uint8)
        images[:, 0, 0, 0] = (index // 256).to(torch.uint8)
        images[:, 0, 0, 1] = (index % 256).to(torch.uint8)
        labels = torch.arange(count) % len(CLASSES)
        return TensorSplit(images, labels)

    def load(self) -> Splits:
        train = self._split(self.train_per_class, 0)
        val = self._split(self.val_per_class, 1000)
        test = self._split(2, 2000)
        return Splits(train, val, test, CLASSES)


def _datamodule(source: object = None, **kwargs: object) -> ImageDataModule:
    module = ImageDataModule(
        source=source or NumberedSource(),
        in_channels=1,
        num_classes=len(CLASSES),
        image_size=[4, 4],
        mean=[0.5],
        std=[0.25],
        batch_size=4,
        **kwargs,
    )
    module.setup("fit")
    return module


def _ids(split: TensorSplit) -> list[int]:
    return (split.images[:, 0, 0, 0].long() * 256 + split.images[:, 0, 0, 1].long()).tolist()


def test_the_val_parts_of_the_folds_cover_train_plus_val_exactly_once() -> None:
    source = NumberedSource()
    original = source.load()
    pool = sorted(_ids(original.train) + _ids(original.val))
    val_parts = []
    for fold in range(5):
        splits = _datamodule(source, fold=fold, num_folds=5).splits
        train, val = _ids(splits.train), _ids(splits.val)
        assert not set(train) & set(val)
        assert sorted(train + val) == pool
        val_parts += val
    assert sorted(val_parts) == pool


def test_each_fold_keeps_the_class_proportions() -> None:
    for fold in range(3):
        val = _datamodule(fold=fold, num_folds=3).splits.val
        counts = torch.bincount(val.labels, minlength=len(CLASSES))
        # 17 images per class in train+val: 5 or 6 of each class in every third.
        assert counts.min() >= 5 and counts.max() <= 6


def test_the_test_split_is_untouched() -> None:
    source = NumberedSource()
    splits = _datamodule(source, fold=2).splits
    assert _ids(splits.test) == _ids(source.load().test)


def test_the_folds_depend_on_fold_seed_not_on_the_run_seed() -> None:
    first = _ids(_datamodule(fold=1, seed=0).splits.val)
    assert _ids(_datamodule(fold=1, seed=7).splits.val) == first
    assert _ids(_datamodule(fold=1, seed=0, fold_seed=1).splits.val) != first


def test_without_a_fold_the_sources_own_split_is_kept() -> None:
    source = NumberedSource()
    splits = _datamodule(source).splits
    assert _ids(splits.train) == _ids(source.load().train)
    assert _ids(splits.val) == _ids(source.load().val)


@pytest.mark.parametrize(
    ("fold", "num_folds", "message"),
    [(5, 5, "data.fold=5"), (-1, 5, "data.fold=-1"), (0, 1, "data.num_folds=1")],
)
def test_a_fold_outside_the_folds_names_the_key(fold: int, num_folds: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _datamodule(fold=fold, num_folds=num_folds)


def test_folds_of_a_streamed_data_set_are_refused() -> None:
    class Streamed(NumberedSource):
        def load(self) -> Splits:
            splits = super().load()
            dataset = TensorDataset(splits.train.images, splits.train.labels)
            return Splits(dataset, dataset, None, CLASSES)

    with pytest.raises(ValueError, match="in-memory"):
        _datamodule(Streamed(), fold=0)
