"""Batches of an in-memory split, by index: no Dataset, no per-sample Python work."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from convnet.data.splits import TensorSplit


class TensorBatches:
    """Iterate over (uint8 images, labels) batches of a TensorSplit.

    With `shuffle`, each epoch has its own permutation drawn from (seed, epoch), so the
    data order is fixed by the seed and a run resumed at epoch k sees what it would have
    seen. Under DDP each rank takes a disjoint, equal-sized shard of the permutation.
    Each pass starts at `batches_done()`: 0 for a new epoch, and for a run resumed from a
    mid-epoch checkpoint the number of batches it had trained on, so it continues with
    the next batch instead of repeating the epoch.
    A per-sample DataLoader would cost ~10x more than the training step on small images;
    indexing the whole set at once costs almost nothing.
    """

    def __init__(
        self,
        split: TensorSplit,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
        batches_done: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = epoch
        self.batches_done = batches_done
        self.rank = rank
        self.world_size = world_size

    def _indices(self) -> Tensor:
        n = len(self.split)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch())
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            # Equal shards (a few samples dropped) keep every rank in lock-step.
            per_rank = n // self.world_size
            order = order[self.rank * per_rank : (self.rank + 1) * per_rank]
        return order

    def __len__(self) -> int:
        n = len(self.split) // self.world_size if self.world_size > 1 else len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def state_dict(self) -> dict[str, int]:
        """Return where the epoch stands (Lightning's resumable-loader interface)."""
        return {"epoch": self.epoch(), "batches_done": self.batches_done()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Nothing to restore: the position comes from Lightning's restored progress
        counters through `batches_done`, which also covers the case where Lightning
        builds the loader before it restores a checkpoint."""

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._indices()
        # Read when the first batch is asked for, after Lightning has reset or restored
        # its counters for this epoch.
        for batch in range(self.batches_done(), len(self)):
            index = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield self.split.images[index], self.split.labels[index]
