"""The order of an epoch's samples, and batches of an in-memory split by index.

Both data paths share one order: an in-memory split held on the training device
(TensorBatches) and a streamed Dataset read by DataLoader workers (EpochBatchSampler).
The order is fixed by (seed, epoch), each DDP rank takes a disjoint shard, and a pass
starts at `batches_done()`, so a run resumed mid-epoch continues with the batch it
would have trained on next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from convnet.data.splits import TensorSplit


def epoch_order(
    num_samples: int, shuffle: bool, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> Tensor:
    """Return the sample indices rank `rank` visits in `epoch`, in order (on the CPU).

    The permutation is drawn on the CPU from (seed, epoch) alone, so it is the same on
    every device and every rank; ranks then take equal disjoint slices of it (a few
    samples dropped, which keeps every rank in lock-step).
    """
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(num_samples, generator=generator)
    else:
        order = torch.arange(num_samples)
    if world_size > 1:
        per_rank = num_samples // world_size
        order = order[rank * per_rank : (rank + 1) * per_rank]
    return order


def num_batches(num_samples: int, batch_size: int, drop_last: bool, world_size: int = 1) -> int:
    """Return the number of batches one rank gets from `num_samples` samples."""
    n = num_samples // world_size if world_size > 1 else num_samples
    return n // batch_size if drop_last else -(-n // batch_size)


class _EpochBatches:
    """Batches of indices of an epoch: the order, the count and the resume position."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
        batches_done: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = epoch
        self.batches_done = batches_done
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return num_batches(self.num_samples, self.batch_size, self.drop_last, self.world_size)

    def _order(self) -> Tensor:
        return epoch_order(
            self.num_samples, self.shuffle, self.seed, self.epoch(), self.rank, self.world_size
        )

    def _index_batches(self, order: Tensor) -> Iterator[tuple[int, Tensor]]:
        """Yield (the batch's number in the epoch, its sample indices) from batches_done()."""
        # batches_done() is read when the first batch is asked for, after Lightning has
        # reset or restored its counters for this epoch.
        for batch in range(self.batches_done(), len(self)):
            yield batch, order[batch * self.batch_size : (batch + 1) * self.batch_size]

    def state_dict(self) -> dict[str, int]:
        """Return where the epoch stands (Lightning's resumable-loader interface)."""
        return {"epoch": self.epoch(), "batches_done": self.batches_done()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Nothing to restore: the position comes from Lightning's restored progress
        counters through `batches_done`, which also covers the case where Lightning
        builds the loader before it restores a checkpoint."""


class TensorBatches(_EpochBatches):
    """Iterate over (uint8 images, labels) batches of a TensorSplit, by index.

    The split lives where its tensors are: the data module puts it on the training
    device once, so a batch is one gather there, with no host-to-device copy per step
    and no per-sample Python work. (A per-sample DataLoader costs ~10x more than the
    training step on small images.)

    Args:
        crops: makes a batch's images from (its sample indices, its number in the epoch)
            instead of gathering them: a training batch's random crops (CropSource).
    """

    def __init__(
        self,
        split: TensorSplit,
        batch_size: int,
        crops: Callable[[Tensor, int], Tensor] | None = None,
        **order: object,
    ) -> None:
        super().__init__(len(split), batch_size, **order)  # type: ignore[arg-type]
        self.split = split
        self.crops = crops

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._order().to(self.split.images.device)  # one copy per epoch
        for number, index in self._index_batches(order):
            labels = self.split.labels.index_select(0, index)
            if self.crops is not None:
                yield self.crops(index, number), labels
            else:
                # index_select copies whole images; indexing with [index] goes element by
                # element, 15-20x as long on the CPU (60 against 4 us for 32 CIFAR images).
                yield self.split.images.index_select(0, index), labels


class EpochBatchSampler(_EpochBatches, Sampler[list[int]]):
    """A DataLoader batch sampler with the same order and resume position as TensorBatches.

    A DataLoader's own shuffling draws each epoch from one running generator and always
    restarts an epoch at its first batch; this one makes streamed data resume exactly.
    """

    def __iter__(self) -> Iterator[list[int]]:
        for _, index in self._index_batches(self._order()):
            yield index.tolist()


class ResumableLoader:
    """A DataLoader over an EpochBatchSampler, started at the first batch asked for.

    Lightning builds the first epoch's iterator before it restores a checkpoint's
    progress, and DataLoader workers draw their first batches as soon as the iterator
    exists: started then, a resumed run would read the wrong epoch from its first batch.
    Starting at the first `next` reads the restored position (as TensorBatches does).
    Being a plain iterable, it also keeps Lightning from swapping in a sampler of its own.
    """

    def __init__(self, loader: DataLoader) -> None:
        if not isinstance(loader.batch_sampler, EpochBatchSampler):
            raise TypeError("ResumableLoader needs a DataLoader with an EpochBatchSampler")
        self.loader = loader
        self.batch_sampler = loader.batch_sampler

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[Any]:
        yield from self.loader

    # Lightning stops a DataLoader's workers when its loop ends (fit, validate, test, and
    # on an interrupt), by shutting down the loader's `_iterator`; forwarding it lets Lightning
    # do the same for the DataLoader inside. Left to the garbage collector, the persistent
    # iterator (held in a reference cycle) cost 5 s a loader wherever the collector reached
    # it, after the run (a three-job sweep in one process: 30.8 against 10.4 s): the
    # collector closes its queues before the iterator's __del__ tells the workers to stop, so
    # they never hear it and torch kills them after its 5 s join timeout.
    @property
    def _iterator(self) -> Any:
        return self.loader._iterator

    @_iterator.setter
    def _iterator(self, iterator: Any) -> None:
        self.loader._iterator = iterator

    def state_dict(self) -> dict[str, int]:
        """Return where the epoch stands (Lightning's resumable-loader interface)."""
        return self.batch_sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Nothing to restore (see EpochBatchSampler.load_state_dict)."""
