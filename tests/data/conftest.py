"""Tiny fake copies of torchvision's data set files, and a guard that keeps tests offline."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import socket
import struct
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torchvision

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
CIFAR100_CLASSES = ["apple", "aquarium_fish", "baby", "bear", "beaver"]


@dataclass
class FakeImages:
    """What was written: train and test images as uint8 (N, C, H, W) and their labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every attempt to reach the network fail at once, as on an offline machine."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise URLError("network disabled in tests")

    connect = socket.socket.connect

    def refuse_socket(self: socket.socket, *args: object, **kwargs: object) -> None:
        # Local sockets stay: DataLoader workers hand batches over through them.
        if self.family == socket.AF_UNIX:
            return connect(self, *args, **kwargs)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse_socket)


def _balanced_labels(num_images: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(num_images) % num_classes).astype(np.int64)


def _fake_images(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pickle(path: Path, content: dict) -> None:
    with open(path, "wb") as file:
        pickle.dump(content, file)


def write_fake_cifar(
    root: Path, variant: str, monkeypatch: pytest.MonkeyPatch, train_per_class: int = 5
) -> FakeImages:
    """Write CIFAR-10 ("cifar10") or CIFAR-100 ("cifar100") pickles under root and trust them.

    torchvision checks each file's md5; the class's lists of md5 sums are pointed at the
    fake files for this test only.
    """
    rng = np.random.default_rng(0 if variant == "cifar10" else 1)
    cls = torchvision.datasets.CIFAR10 if variant == "cifar10" else torchvision.datasets.CIFAR100
    names = CIFAR10_CLASSES if variant == "cifar10" else CIFAR100_CLASSES
    label_key = "labels" if variant == "cifar10" else "fine_labels"
    folder = root / cls.base_folder
    folder.mkdir(parents=True)

    train_names = [name for name, _ in cls.train_list]
    num_train = train_per_class * len(names)
    train_labels = _balanced_labels(num_train, len(names), rng)
    train_images = _fake_images(rng, (num_train, 3, 32, 32))
    test_labels = _balanced_labels(len(names), len(names), rng)
    test_images = _fake_images(rng, (len(names), 3, 32, 32))

    batches = np.array_split(np.arange(num_train), len(train_names))
    for name, members in zip(train_names, batches, strict=True):
        rows = train_images[members].reshape(len(members), -1)
        _pickle(folder / name, {"data": rows, label_key: train_labels[members].tolist()})
    test_name = cls.test_list[0][0]
    rows = test_images.reshape(len(test_images), -1)
    _pickle(folder / test_name, {"data": rows, label_key: test_labels.tolist()})
    _pickle(folder / cls.meta["filename"], {cls.meta["key"]: names})

    monkeypatch.setattr(cls, "train_list", [[n, _md5(folder / n)] for n in train_names])
    monkeypatch.setattr(cls, "test_list", [[test_name, _md5(folder / test_name)]])
    meta = dict(cls.meta, md5=_md5(folder / cls.meta["filename"]))
    monkeypatch.setattr(cls, "meta", meta)
    return FakeImages(train_images, train_labels, test_images, test_labels)


def _write_idx(path: Path, array: np.ndarray, gzipped: bool) -> None:
    """Write `array` (uint8) in the big-endian idx format of the MNIST files."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.tobytes()
    if gzipped:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(content))
    else:
        path.write_bytes(content)


def write_fake_mnist(root: Path, class_name: str, gzipped: bool = False) -> FakeImages:
    """Write idx files for MNIST or FashionMNIST (class_name) under root/<class_name>/raw/."""
    rng = np.random.default_rng(2)
    raw = root / class_name / "raw"
    raw.mkdir(parents=True)
    train_labels = _balanced_labels(50, 10, rng)
    train_images = _fake_images(rng, (50, 28, 28))
    test_labels = _balanced_labels(10, 10, rng)
    test_images = _fake_images(rng, (10, 28, 28))
    for prefix, images, labels in (
        ("train", train_images, train_labels),
        ("t10k", test_images, test_labels),
    ):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gzipped)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8), gzipped)
    return FakeImages(train_images[:, None], train_labels, test_images[:, None], test_labels)


@pytest.fixture
def fake_cifar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Return a function that writes fake CIFAR-10/100 files under tmp_path and returns them."""
    return lambda variant, **kwargs: write_fake_cifar(tmp_path, variant, monkeypatch, **kwargs)


@pytest.fixture
def fake_mnist(tmp_path: Path):
    """Return a function that writes fake MNIST/FashionMNIST idx files under tmp_path."""
    return lambda class_name, **kwargs: write_fake_mnist(tmp_path, class_name, **kwargs)
