"""One LightningDataModule over every data source."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from convnet import keys
from convnet.checks import (
    ConfigError,
    counted,
    int_at_least,
    non_negative_int,
    positive_int,
    to_pair,
)
from convnet.data.augment import (
    CROP_SOURCE_MAX_BYTES,
    RESIZED_SPLIT_MAX_BYTES,
    BatchTransform,
    CropSource,
    resize,
)
from convnet.data.batches import EpochBatchSampler, ResumableLoader, TensorBatches
from convnet.data.splits import (
    Split,
    Splits,
    TensorSplit,
    check_class_count,
    check_fold,
    kfold_splits,
)

log = logging.getLogger(__name__)


class Source(Protocol):
    """What a data source provides: `prepare` fetches files once, `load` reads them."""

    def prepare(self) -> None: ...

    def load(self) -> Splits: ...


class ImageDataModule(L.LightningDataModule):
    """Batches of one data source, augmented and normalised on the training device.

    In-memory sources (TensorSplit) are batched by index; streamed sources (Datasets)
    go through DataLoader workers. Both give uint8 batches; `on_after_batch_transfer`
    turns them into normalised float batches where they will be used, so augmentation
    runs once per batch on the GPU instead of once per image on the CPU. An in-memory
    training batch comes cropped and flipped already, in the network's memory format: one
    gather from a padded copy of the split (CropSource), with the draws the per-batch path
    would make.
    """

    def __init__(
        self,
        source: Source,
        in_channels: int,
        num_classes: int,
        image_size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        crop_padding: int = 0,
        flip: bool = False,
        num_workers: int = 0,
        seed: int = 0,
        fold: int | None = None,
        num_folds: int = 5,
        fold_seed: int = 0,
    ) -> None:
        super().__init__()
        check_fold(fold, num_folds)
        batch_size = positive_int(batch_size, keys.BATCH_SIZE)
        if eval_batch_size is not None:
            eval_batch_size = positive_int(eval_batch_size, keys.EVAL_BATCH_SIZE)
        in_channels = positive_int(in_channels, keys.IN_CHANNELS)
        num_classes = int_at_least(num_classes, keys.NUM_CLASSES, 2)
        image_size = to_pair(image_size, keys.IMAGE_SIZE)
        if len(mean) != in_channels:
            raise ConfigError(
                f"data.mean has {counted(len(mean), 'value')} but "
                f"data.in_channels={in_channels}; "
                "give one mean and one std per channel"
            )
        num_workers = non_negative_int(num_workers, keys.NUM_WORKERS)
        self.source = source
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        # k-fold cross-validation: val is part `fold` of train+val (splits.kfold_splits).
        # fold_seed is fixed like the source's split seed, so every run sees the same folds.
        self.fold = fold
        self.num_folds = num_folds
        self.fold_seed = fold_seed
        self.transform = BatchTransform(mean, std, crop_padding, flip, image_size)
        self.splits: Splits | None = None
        self._generator: torch.Generator | None = None
        self._device_splits: dict[tuple[int, str], TensorSplit] = {}
        self._crop_source: tuple[tuple, CropSource] | None = None
        self._train_cropped = False  # training batches come cropped (TensorBatches)

    @property
    def classes(self) -> list[str]:
        """Return the class names, in label order."""
        return self._loaded().classes

    def prepare_data(self) -> None:
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            splits = self.source.load()
            if self.fold is not None:
                splits = kfold_splits(splits, self.fold, self.num_folds, self.fold_seed)
                log.info("fold %d of %d of train+val", self.fold, self.num_folds)
            self.splits = splits
            self._check(self.splits)

    def _loaded(self) -> Splits:
        if self.splits is None:
            self.setup()
        assert self.splits is not None
        return self.splits

    def _check(self, splits: Splits) -> None:
        check_class_count(self.num_classes, splits.classes)
        sample = splits.train.images[:1] if isinstance(splits.train, TensorSplit) else None
        channels = sample.shape[1] if sample is not None else splits.train[0][0].shape[0]
        if channels != self.in_channels:
            raise ConfigError(
                f"data.in_channels={self.in_channels} but the images have {channels} "
                f"channels; set data.in_channels={channels}"
            )
        sizes = {name: len(split) for name, split in self._named_splits(splits)}
        log.info("data: %s, classes: %s", sizes, ", ".join(splits.classes))

    @staticmethod
    def _named_splits(splits: Splits) -> Iterable[tuple[str, Split]]:
        named = [("train", splits.train), ("val", splits.val), ("test", splits.test)]
        return [(name, split) for name, split in named if split is not None]

    def _batches(self, split: Split, training: bool) -> Iterable:
        batch_size = self.batch_size if training else self.eval_batch_size
        trainer = self.trainer
        world_size = trainer.world_size if trainer is not None else 1
        order = {
            "shuffle": training,
            "drop_last": training and len(split) // world_size > batch_size,
            "seed": self.seed,
            "epoch": self._epoch,
            "batches_done": self._batches_done if training else lambda: 0,
            "rank": trainer.global_rank if trainer is not None else 0,
            "world_size": world_size,
        }
        if isinstance(split, TensorSplit):
            on_device, crops = self._on_device(split), None
            if training:
                crops = self._crops(on_device)
                self._train_cropped = crops is not None
            return TensorBatches(on_device, batch_size, crops=crops, **order)
        loader = DataLoader(
            split,
            batch_sampler=EpochBatchSampler(len(split), batch_size, **order),
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )
        return ResumableLoader(loader)

    def _on_device(self, split: TensorSplit) -> TensorSplit:
        """Return `split` held on the training device at data.image_size, copied there (and
        resized) once per split."""
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        if device is None:
            return split
        key = (id(split), str(device))
        held = self._device_splits.get(key)
        if held is None:
            # uint8 on the device: CIFAR-10's 60,000 images take 184 MB.
            images, labels = self._resized(split.images.to(device)), split.labels.to(device)
            unchanged = images is split.images and labels is split.labels
            held = self._device_splits[key] = split if unchanged else TensorSplit(images, labels)
        return held

    def _resized(self, images: Tensor) -> Tensor:
        """Return uint8 `images` at data.image_size, resized once for every epoch, so that a
        training batch is one gather of its crops (CropSource): MNIST's 60,000 28x28 images
        to 32x32 take 0.6 s on 2 CPU cores, against 0.7 ms a batch of 128 resized batch by
        batch. Images of that size already, or whose resized copy would pass
        RESIZED_SPLIT_MAX_BYTES, are returned as they are (on_after_batch_transfer then
        resizes each batch)."""
        size = self.transform.image_size
        if size is None or tuple(images.shape[-2:]) == size:
            return images
        count, channels = images.shape[:2]
        resized_bytes = count * channels * size[0] * size[1] * images.element_size()
        if resized_bytes > RESIZED_SPLIT_MAX_BYTES:
            log.info(
                "images resized batch by batch: resized once they would take %d MiB",
                resized_bytes >> 20,
            )
            return images
        return resize(images, size)

    def _crops(self, split: TensorSplit) -> Callable[[Tensor, int], Tensor] | None:
        """Return how training batches of the in-memory `split` get their random crops in
        one gather (CropSource), or None where on_after_batch_transfer crops them: with no
        augmentation, no trainer, images resized batch by batch or a CropSource too large."""
        transform = self.transform
        resized = transform.image_size not in (None, tuple(split.images.shape[-2:]))
        if self.trainer is None or resized or not (transform.crop_padding or transform.flip):
            return None
        size = CropSource.bytes_for(split.images, transform.crop_padding, transform.flip)
        if size > CROP_SOURCE_MAX_BYTES:
            log.info(
                "training crops made batch by batch: a padded copy would take %d MiB", size >> 20
            )
            return None
        # The network's layout (the LightningModule's, set up by now), so no batch is converted.
        module = getattr(self.trainer, "lightning_module", None)
        memory_format = getattr(module, "memory_format", None) or torch.contiguous_format
        key = (id(split), split.images.device, memory_format)
        if self._crop_source is None or self._crop_source[0] != key:
            source = CropSource(split.images, transform.crop_padding, transform.flip, memory_format)
            self._crop_source = (key, source)
        source = self._crop_source[1]
        return lambda index, batch: source(index, self._augment_generator(index.device, batch))

    def train_dataloader(self) -> Iterable:
        return self._batches(self._loaded().train, training=True)

    def val_dataloader(self) -> Iterable:
        return self._batches(self._loaded().val, training=False)

    def test_dataloader(self) -> Iterable:
        test = self._loaded().test
        if test is None:
            raise ConfigError("this data source has no test split; run with test=false")
        return self._batches(test, training=False)

    def has_test_split(self) -> bool:
        """Return whether the source has a test split."""
        return self._loaded().test is not None

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _batches_done(self) -> int:
        """Return the number of training batches of this epoch handed out so far."""
        if self.trainer is None:
            return 0
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.ready

    def _augment_generator(self, device: torch.device, batch: int | None = None) -> torch.Generator:
        # Seeded from (seed, epoch, batch): augmentation is fixed by the seed, independent
        # of every other use of the global RNG, and the same after a mid-epoch resume.
        # Lightning moves a batch to the device just before counting it as ready, so the
        # batch's index in its epoch (`batch`, where TensorBatches makes the crops) is the
        # count of batches ready before it.
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
        batch = self._batches_done() if batch is None else batch
        self._generator.manual_seed((self.seed * 1_000_003 + self._epoch()) * 1_000_003 + batch)
        return self._generator

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # In-memory batches are made on the device (TensorBatches): handed on as they are,
        # without Lightning walking the batch to move each tensor where it already is.
        if isinstance(batch, tuple | list) and all(
            isinstance(part, torch.Tensor) and part.device == device for part in batch
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        if training and self._train_cropped:  # cropped already, in the network's layout
            return self.transform.normalise(images), labels
        generator = self._augment_generator(images.device) if training else None
        return self.transform(images, training, generator), labels
