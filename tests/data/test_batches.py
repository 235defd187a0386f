"""Index batches over an in-memory split."""

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from convnet.checks import ConfigError
from convnet.data import ImageDataModule
from convnet.data.batches import EpochBatchSampler, ResumableLoader, TensorBatches
from convnet.data.splits import Splits, TensorSplit


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


class _Images(Dataset):
    """The images of a TensorSplit one at a time, as a streamed source gives them."""

    def __init__(self, split: TensorSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.split.images[index], int(self.split.labels[index])


@pytest.mark.parametrize(("rank", "world_size"), [(0, 1), (1, 3)])
def test_streamed_batches_come_in_the_order_of_the_in_memory_batches(rank, world_size) -> None:
    split, order = _split(90), {"shuffle": True, "drop_last": True, "seed": 5, "rank": rank}
    order |= {"world_size": world_size, "epoch": lambda: 2}
    in_memory = TensorBatches(split, 8, **order)
    loader = DataLoader(_Images(split), batch_sampler=EpochBatchSampler(90, 8, **order))
    streamed = ResumableLoader(loader)
    assert len(streamed) == len(in_memory) == 90 // world_size // 8
    for (images, labels), (their_images, their_labels) in zip(in_memory, streamed, strict=True):
        assert torch.equal(labels, their_labels)
        assert torch.equal(images, their_images)


def test_a_pass_starts_at_the_batches_already_done() -> None:
    done = {"value": 0}
    batches = TensorBatches(_split(40), 8, shuffle=True, batches_done=lambda: done["value"])
    whole = _labels(batches)
    done["value"] = 3
    assert _labels(batches) == whole[3 * 8 :]


class _Trainer:
    """What the data module reads of a Trainer, on a device of the test's choosing."""

    def __init__(self, device: str) -> None:
        self.strategy = SimpleNamespace(root_device=torch.device(device))
        self.global_rank, self.world_size, self.current_epoch, self.training = 0, 1, 0, True
        progress = SimpleNamespace(current=SimpleNamespace(ready=0))
        self.fit_loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))


class _Source:
    def prepare(self) -> None:
        pass

    def load(self) -> Splits:
        split = _split(64)
        return Splits(train=split, val=split, test=None, classes=[str(i) for i in range(64)])


def test_in_memory_splits_are_copied_to_the_training_device_once() -> None:
    module = ImageDataModule(_Source(), 1, 64, [2, 2], mean=[0.5], std=[0.5], batch_size=16)
    module.trainer = _Trainer("meta")  # a device other than the CPU, that runs anywhere
    first = module.train_dataloader()
    images, labels = next(iter(first))
    assert images.device.type == labels.device.type == "meta"
    assert images.shape == (16, 1, 2, 2)
    assert module.train_dataloader().split is first.split  # not copied again
    assert module._loaded().train.images.device.type == "cpu"  # the CPU copy stays


class _Pictures:
    def prepare(self) -> None:
        pass

    def load(self) -> Splits:
        images = torch.randint(0, 256, (48, 3, 6, 6), dtype=torch.uint8)
        split = TensorSplit(images, torch.arange(48))  # a label names its image
        return Splits(train=split, val=split, test=None, classes=[str(i) for i in range(48)])


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_in_memory_training_batches_come_cropped_as_the_per_batch_path_crops_them(
    memory_format: torch.memory_format,
) -> None:
    module = ImageDataModule(
        _Pictures(), 3, 48, [6, 6], [0.5] * 3, [0.25] * 3, batch_size=8, crop_padding=2, flip=True
    )
    trainer = module.trainer = _Trainer("cpu")
    trainer.lightning_module = SimpleNamespace(memory_format=memory_format)
    trainer.current_epoch = 1
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    progress.ready = 2  # resumed mid-epoch: the pass starts at its third batch
    train = module._loaded().train
    loader = module.train_dataloader()
    assert module._train_cropped  # by a CropSource, in TensorBatches
    batches = 0
    for number, (crops, labels) in enumerate(loader, start=2):
        progress.ready = number  # as Lightning counts a batch: ready once on the device
        images, _ = module.on_after_batch_transfer((crops, labels), 0)
        assert images.is_contiguous(memory_format=memory_format)
        # The per-batch path: the batch's own images, cropped after the transfer.
        module._train_cropped = False
        gathered = (train.images.index_select(0, labels), labels)
        expected, _ = module.on_after_batch_transfer(gathered, 0)
        module._train_cropped = True
        assert torch.equal(images, expected)
        batches += 1
    assert batches == 6 - 2


def test_a_split_whose_padded_copy_is_too_large_is_cropped_batch_by_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("convnet.data.datamodule.CROP_SOURCE_MAX_BYTES", 1000)
    module = ImageDataModule(
        _Pictures(), 3, 48, [6, 6], [0.5] * 3, [0.25] * 3, batch_size=8, crop_padding=2
    )
    module.trainer = _Trainer("cpu")
    images, labels = next(iter(module.train_dataloader()))
    assert not module._train_cropped
    assert torch.equal(images, module._loaded().train.images.index_select(0, labels))
    cropped, _ = module.on_after_batch_transfer((images, labels), 0)  # cropped here instead
    assert not torch.equal(cropped, module.transform.normalise(images))


def test_a_split_of_another_size_is_resized_once_to_the_batches_of_the_per_batch_path() -> None:
    module = ImageDataModule(
        _Pictures(), 3, 48, [9, 7], [0.5] * 3, [0.25] * 3, batch_size=8, crop_padding=2, flip=True
    )
    module.trainer = _Trainer("cpu")
    module.trainer.lightning_module = SimpleNamespace(memory_format=torch.channels_last)
    raw = module._loaded().train.images
    loader = module.train_dataloader()
    assert loader.split.images.shape == (48, 3, 9, 7)  # resized once, for every epoch
    assert module._train_cropped  # and so cropped in one gather from the padded copy
    assert module.train_dataloader().split is loader.split  # not resized again
    for number, (crops, labels) in enumerate(loader):
        module.trainer.fit_loop.epoch_loop.batch_progress.current.ready = number
        images, _ = module.on_after_batch_transfer((crops, labels), 0)
        module._train_cropped = False  # the per-batch path: resized, cropped, normalised
        expected, _ = module.on_after_batch_transfer((raw.index_select(0, labels), labels), 0)
        module._train_cropped = True
        assert expected.shape == (8, 3, 9, 7) and torch.equal(images, expected)
    module.trainer.training = False
    for images, labels in module.val_dataloader():
        evaluated, _ = module.on_after_batch_transfer((images, labels), 0)
        expected, _ = module.on_after_batch_transfer((raw.index_select(0, labels), labels), 0)
        assert torch.equal(evaluated, expected)


def test_a_split_too_large_to_resize_once_is_resized_batch_by_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("convnet.data.datamodule.RESIZED_SPLIT_MAX_BYTES", 48 * 3 * 9 * 7 - 1)
    module = ImageDataModule(
        _Pictures(), 3, 48, [9, 7], [0.5] * 3, [0.25] * 3, batch_size=8, crop_padding=2
    )
    module.trainer = _Trainer("cpu")
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (8, 3, 6, 6) and not module._train_cropped
    cropped, _ = module.on_after_batch_transfer((images, labels), 0)
    assert cropped.shape == (8, 3, 9, 7)


@pytest.mark.parametrize(("mean", "said"), [([0.5], "1 value"), ([0.5, 0.5], "2 values")])
def test_a_mean_per_channel_is_asked_for_before_anything_loads(mean, said) -> None:
    with pytest.raises(ConfigError, match=f"^data.mean has {said} but data.in_channels=3; "):
        ImageDataModule(_Pictures(), 3, 48, [6, 6], mean, [0.25] * 3)
