"""Data sources and the one DataModule that batches them."""

from convnet.data.datamodule import ImageDataModule
from convnet.data.splits import Splits, TensorSplit

__all__ = ["ImageDataModule", "Splits", "TensorSplit"]
