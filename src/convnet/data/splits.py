"""What every data source gives back: train/val/test splits and class names."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from convnet import keys
from convnet.checks import ConfigError, fraction, int_at_least, refuse


@dataclass(frozen=True)
class TensorSplit:
    """A split held in memory: images (N, C, H, W) uint8 and labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return self.images.shape[0]


# A streamed split is any Dataset whose items are (uint8 tensor (C, H, W), int label),
# all of one size; augmentation and normalisation happen later, on the whole batch.
Split = TensorSplit | Dataset


@dataclass(frozen=True)
class Splits:
    """The splits of one data source. `test` is None where the source has no test set."""

    train: Split
    val: Split
    test: Split | None
    classes: list[str]


def check_class_count(
    num_classes: int, classes: list[str], holder: str = "the data", kind: str = "classes"
) -> None:
    """Raise ConfigError naming both when data.num_classes is not the number of `classes`
    that `holder` has (e.g. "/data/digits", "class folders")."""
    if num_classes == len(classes):
        return
    listed = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
    raise ConfigError(
        f"{keys.NUM_CLASSES}={num_classes} but {holder} has {len(classes)} {kind} ({listed}); "
        f"set {keys.NUM_CLASSES}={len(classes)}, or leave it null where the data gives it "
        "(data=imagefolder)"
    )


def stratified_split(labels: torch.Tensor, fractions: list[float], seed: int) -> list[torch.Tensor]:
    """Return index tensors, one per fraction (the last takes the rest), with every class
    split in the same proportions; the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for label in labels.unique():
        members = (labels == label).nonzero().squeeze(1)
        members = members[torch.randperm(members.numel(), generator=generator)]
        start = 0
        for part, share in enumerate(fractions):
            stop = (
                members.numel()
                if part == len(fractions) - 1
                else start + round(share * members.numel())
            )
            parts[part].append(members[start:stop])
            start = stop
    return [torch.cat(part).sort().values for part in parts]


def check_val_fraction(val_fraction: float) -> float:
    """Return `val_fraction` as a float, or raise ConfigError when it is outside [0, 1)."""
    return fraction(val_fraction, "data.source.val_fraction")


def check_fold(fold: int | None, num_folds: int) -> None:
    """Raise ConfigError naming the key when `fold` or `num_folds` cannot select a fold."""
    int_at_least(num_folds, "data.num_folds", 2)
    if fold is None:
        return
    if int_at_least(fold, keys.FOLD, 0) >= num_folds:
        raise refuse(
            keys.FOLD,
            fold,
            f"an integer from 0 to {num_folds - 1} (data.num_folds={num_folds}), or null for "
            "the data set's own train/val split",
        )


def kfold_splits(splits: Splits, fold: int, num_folds: int, seed: int) -> Splits:
    """Return `splits` with train and val replaced by fold `fold` of `num_folds`.

    Train and val are pooled and cut into `num_folds` stratified parts (scikit-learn's
    StratifiedKFold, shuffled by `seed`); val is part `fold` and train the others, so the
    folds' val sets cover train+val exactly once. The test split is left alone.
    """
    check_fold(fold, num_folds)
    if not (isinstance(splits.train, TensorSplit) and isinstance(splits.val, TensorSplit)):
        raise ConfigError(
            f"data.fold={fold}: k-fold cross-validation needs an in-memory data set (shapes, "
            "digits, cifar10, cifar100, mnist, fashion_mnist), not a streamed folder of "
            "images; set data.fold=null"
        )
    from sklearn.model_selection import StratifiedKFold

    images = torch.cat([splits.train.images, splits.val.images])
    labels = torch.cat([splits.train.labels, splits.val.labels])
    folds = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    train_index, val_index = list(folds.split(labels.numpy(), labels.numpy()))[fold]
    train_index, val_index = torch.from_numpy(train_index), torch.from_numpy(val_index)
    return Splits(
        train=TensorSplit(images[train_index], labels[train_index]),
        val=TensorSplit(images[val_index], labels[val_index]),
        test=splits.test,
        classes=splits.classes,
    )
