"""Index batches over an in-memory split."""

import torch

from convnet.data.batches import TensorBatches
from convnet.data.splits import TensorSplit


def _split(n: int) -> TensorSplit:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return TensorSplit(images, torch.arange(n))


def _labels(batches: TensorBatches) -> list[int]:
    return [int(label) for _, labels in batches for label in labels]


def test_an_epoch_visits_every_sample_once_with_images_matching_labels() -> None:
    batches = TensorBatches(_split(100), batch_size=32, shuffle=True, seed=0)
    seen = _labels(batches)
    assert sorted(seen) == list(range(100))
    assert len(batches) == 4
    for images, labels in batches:
        assert torch.equal(images[:, 0, 0, 0].long(), labels)


def test_order_is_fixed_by_seed_and_epoch() -> None:
    epoch = {"value": 0}
    make = lambda seed: TensorBatches(  # noqa: E731
        _split(50), 10, shuffle=True, seed=seed, epoch=lambda: epoch["value"]
    )
    first = _labels(make(0))
    assert first == _labels(make(0))
    assert first != _labels(make(1))
    epoch["value"] = 1
    assert first != _labels(make(0))


def test_drop_last_leaves_out_the_short_batch() -> None:
    batches = TensorBatches(_split(100), batch_size=32, shuffle=True, drop_last=True)
    assert len(batches) == 3
    assert all(len(labels) == 32 for _, labels in batches)


def test_ranks_get_disjoint_equal_shards() -> None:
    shards = [
        _labels(TensorBatches(_split(101), 8, shuffle=True, seed=3, rank=r, world_size=4))
        for r in range(4)
    ]
    assert all(len(shard) == 25 for shard in shards)
    together = [label for shard in shards for label in shard]
    assert len(set(together)) == 100
