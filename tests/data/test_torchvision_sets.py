"""TorchvisionSource on tiny fake copies of the CIFAR and MNIST files; never online."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from collections import Counter
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision

from convnet.checks import ConfigError
from convnet.data.splits import TensorSplit
from convnet.data.torchvision_sets import CorruptArchiveError, TorchvisionSource

MNIST_CLASS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def _labels_by_image(images: np.ndarray, labels: np.ndarray) -> dict[bytes, int]:
    return {image.tobytes(): int(label) for image, label in zip(images, labels, strict=True)}


def _as_pairs(split: TensorSplit) -> list[tuple[bytes, int]]:
    return [
        (image.numpy().tobytes(), int(label))
        for image, label in zip(split.images, split.labels, strict=True)
    ]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loads_uint8_nchw_images_with_the_labels_written(name, tmp_path, fake_cifar):
    written = fake_cifar(name)
    splits = TorchvisionSource(name, tmp_path, download=False, val_fraction=0.2).load()

    for split in (splits.train, splits.val, splits.test):
        assert isinstance(split, TensorSplit)
        assert split.images.dtype == torch.uint8
        assert split.labels.dtype == torch.int64
        assert split.images.shape[1:] == (3, 32, 32)
    assert len(splits.train) + len(splits.val) == len(written.train_labels)
    # Every train and val image is one that was written, with the label written for it.
    expected = _labels_by_image(written.train_images, written.train_labels)
    loaded = _as_pairs(splits.train) + _as_pairs(splits.val)
    assert sorted(loaded) == sorted(expected.items())
    assert torch.equal(splits.test.images, torch.from_numpy(written.test_images))
    assert torch.equal(splits.test.labels, torch.from_numpy(written.test_labels))


def test_cifar_pixels_round_trip_exactly(tmp_path, fake_cifar):
    written = fake_cifar("cifar10")
    splits = TorchvisionSource("cifar10", tmp_path, download=False).load()
    known = written.test_images[3]  # (3, 32, 32), written channel-planar like the real files
    assert splits.test.images[3].tolist() == known.tolist()
    assert splits.test.images[3, 0, 0, 0].item() == known[0, 0, 0]


def test_cifar10_class_names_are_the_published_ones(tmp_path, fake_cifar):
    fake_cifar("cifar10")
    splits = TorchvisionSource("cifar10", tmp_path, download=False).load()
    assert splits.classes[:3] == ["airplane", "automobile", "bird"]
    assert len(splits.classes) == 10


def test_cifar100_class_names_read_without_underscores(tmp_path, fake_cifar):
    fake_cifar("cifar100")
    splits = TorchvisionSource("cifar100", tmp_path, download=False).load()
    assert splits.classes == ["apple", "aquarium fish", "baby", "bear", "beaver"]


@pytest.mark.parametrize("gzipped", [False, True], ids=["raw", "gzipped"])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_idx_files_load_as_one_channel_images(name, gzipped, tmp_path, fake_mnist):
    written = fake_mnist(MNIST_CLASS[name], gzipped=gzipped)
    splits = TorchvisionSource(name, tmp_path, download=False, val_fraction=0.2).load()

    assert splits.train.images.shape == (40, 1, 28, 28)
    assert splits.val.images.shape == (10, 1, 28, 28)
    assert splits.test.images.dtype == torch.uint8
    assert splits.test.images[7].tolist() == written.test_images[7].tolist()
    assert splits.test.labels.tolist() == written.test_labels.tolist()
    expected = _labels_by_image(written.train_images, written.train_labels)
    loaded = _as_pairs(splits.train) + _as_pairs(splits.val)
    assert sorted(loaded) == sorted(expected.items())


def test_mnist_class_names_are_digits(tmp_path, fake_mnist):
    fake_mnist("MNIST")
    splits = TorchvisionSource("mnist", tmp_path, download=False).load()
    assert splits.classes == [str(digit) for digit in range(10)]


def test_fashion_mnist_class_names_are_the_published_ones(tmp_path, fake_mnist):
    fake_mnist("FashionMNIST")
    splits = TorchvisionSource("fashion_mnist", tmp_path, download=False).load()
    assert splits.classes[0] == "T-shirt/top"
    assert splits.classes[-1] == "Ankle boot"


def test_val_split_is_seeded_disjoint_and_stratified(tmp_path, fake_cifar):
    fake_cifar("cifar10", train_per_class=10)

    def load(seed: int):
        return TorchvisionSource(
            "cifar10", tmp_path, download=False, val_fraction=0.2, split_seed=seed
        ).load()

    first, again, other = load(0), load(0), load(1)
    assert torch.equal(first.val.images, again.val.images)
    assert torch.equal(first.train.labels, again.train.labels)
    assert not torch.equal(first.val.images, other.val.images)
    train_images = {image for image, _ in _as_pairs(first.train)}
    assert not train_images & {image for image, _ in _as_pairs(first.val)}
    assert Counter(first.val.labels.tolist()) == dict.fromkeys(range(10), 2)
    assert Counter(first.train.labels.tolist()) == dict.fromkeys(range(10), 8)


def test_val_split_ignores_the_global_torch_seed(tmp_path, fake_cifar):
    fake_cifar("cifar10")
    source = TorchvisionSource("cifar10", tmp_path, download=False, val_fraction=0.2)
    torch.manual_seed(1)
    first = source.load()
    torch.manual_seed(2)
    second = source.load()
    assert torch.equal(first.val.images, second.val.images)


def test_zero_val_fraction_keeps_every_training_image_in_train(tmp_path, fake_mnist):
    fake_mnist("MNIST")
    splits = TorchvisionSource("mnist", tmp_path, download=False, val_fraction=0.0).load()
    assert (len(splits.train), len(splits.val)) == (50, 0)


@pytest.mark.parametrize("val_fraction", [-0.1, 1.0, 1.5])
def test_val_fraction_outside_zero_to_one_is_refused(val_fraction, tmp_path):
    with pytest.raises(
        ValueError, match=r"val_fraction=.* is not allowed: use a number in \[0, 1\)"
    ):
        TorchvisionSource("cifar10", tmp_path, val_fraction=val_fraction)


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="cifar10, cifar100, mnist, fashion_mnist") as error:
        TorchvisionSource("imagenet", tmp_path)
    assert "'imagenet'" in str(error.value)


@pytest.fixture
def downloads_fail(monkeypatch):
    """Make torchvision's downloads fail as they do offline, and record what was tried."""
    tried: list[str] = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        tried.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    for module in (torchvision.datasets.cifar, torchvision.datasets.mnist):
        monkeypatch.setattr(module, "download_and_extract_archive", offline)
    return tried


EXPECTED_HELP = {
    "cifar10": (
        "cifar-10-batches-py",
        ["data_batch_1", "data_batch_5", "test_batch", "batches.meta"],
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": (
        "cifar-100-python",
        ["train", "test", "meta"],
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
    "mnist": (
        "MNIST/raw",
        ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
    ),
    "fashion_mnist": (
        "FashionMNIST/raw",
        ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
        "fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz",
    ),
}


@pytest.mark.parametrize("name", list(EXPECTED_HELP))
def test_prepare_offline_says_where_to_put_which_files(name, tmp_path, downloads_fail):
    folder, files, url = EXPECTED_HELP[name]
    with pytest.raises(FileNotFoundError) as error:
        TorchvisionSource(name, tmp_path / "data", download=True).prepare()
    message = str(error.value)
    assert downloads_fail, "the download was never attempted"
    assert str(tmp_path / "data" / folder) + "/" in message
    assert all(file in message for file in files)
    assert url in message
    assert "offline" in message


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_prepare_offline_is_explained_when_the_connection_itself_fails(name, tmp_path):
    # Only the autouse no_network guard stands in the way: torchvision's own code path runs.
    with pytest.raises(FileNotFoundError, match="appears to be offline") as error:
        TorchvisionSource(name, tmp_path, download=True).prepare()
    # torchvision's MNIST names each mirror it tried on a line of its own; the error is one.
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_a_failed_download_leaves_no_folders_it_made(name, tmp_path):
    # torchvision's own code path (only the autouse no_network guard stands in its way),
    # which makes the root and, for MNIST, MNIST/raw inside it before downloading.
    root = tmp_path / "new" / "data"
    with pytest.raises(FileNotFoundError, match="appears to be offline"):
        TorchvisionSource(name, root, download=True).prepare()
    assert list(tmp_path.iterdir()) == []
    # A root that was there is kept, with what it held.
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("mine")
    with pytest.raises(FileNotFoundError, match="appears to be offline"):
        TorchvisionSource(name, root, download=True).prepare()
    assert (root / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", list(EXPECTED_HELP))
def test_load_without_files_explains_and_never_downloads(name, tmp_path, downloads_fail):
    folder, files, url = EXPECTED_HELP[name]
    with pytest.raises(FileNotFoundError) as error:
        TorchvisionSource(name, tmp_path, download=True).load()
    message = str(error.value)
    assert downloads_fail == []
    assert f"is not in {tmp_path / folder}/" in message
    assert all(file in message for file in files)
    assert url in message
    assert "download=true" in message


def test_prepare_with_files_present_needs_no_network(tmp_path, fake_cifar, fake_mnist):
    fake_cifar("cifar10")
    fake_mnist("MNIST", gzipped=True)
    TorchvisionSource("cifar10", tmp_path, download=True).prepare()
    TorchvisionSource("mnist", tmp_path, download=True).prepare()
    assert (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_prepare_without_download_does_not_fetch(tmp_path, downloads_fail):
    TorchvisionSource("cifar10", tmp_path, download=False).prepare()
    assert downloads_fail == []


def test_corrupted_cifar_file_is_reported_as_such(tmp_path, fake_cifar):
    fake_cifar("cifar10")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:-10])
    with pytest.raises(FileNotFoundError, match="corrupted") as error:
        TorchvisionSource("cifar10", tmp_path, download=False).load()
    assert str(Path(tmp_path, "cifar-10-batches-py")) in str(error.value)


@pytest.fixture
def cifar_archive(tmp_path, fake_cifar, monkeypatch) -> Path:
    """Return data/cifar-10-python.tar.gz as torchvision downloads it (trusted), not unpacked."""
    fake_cifar("cifar10")
    archive = tmp_path / torchvision.datasets.CIFAR10.filename
    unpacked = tmp_path / torchvision.datasets.CIFAR10.base_folder
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(unpacked, arcname=unpacked.name)
    shutil.rmtree(unpacked)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "tgz_md5", md5)
    return archive


def test_a_complete_cifar_archive_is_unpacked_offline(tmp_path, cifar_archive):
    TorchvisionSource("cifar10", tmp_path, download=True).prepare()
    splits = TorchvisionSource("cifar10", tmp_path, download=False).load()
    assert len(splits.test) == 10


@pytest.mark.parametrize("damage", ["partial", "corrupt"])
@pytest.mark.parametrize("download", [True, False])
def test_a_damaged_cifar_archive_is_named_as_failing_its_checksum(
    tmp_path, cifar_archive, damage, download
):
    whole = cifar_archive.read_bytes()
    if damage == "partial":  # an interrupted download
        cifar_archive.write_bytes(whole[: len(whole) // 2])
    else:
        middle = len(whole) // 2
        cifar_archive.write_bytes(
            whole[:middle] + bytes([whole[middle] ^ 0xFF]) + whole[middle + 1 :]
        )
    before = cifar_archive.read_bytes()
    source = TorchvisionSource("cifar10", tmp_path, download=download)

    with pytest.raises(CorruptArchiveError) as error:
        source.prepare()
        source.load()

    message = str(error.value)
    assert isinstance(error.value, OSError)
    assert f"{cifar_archive} failed its MD5 checksum" in message
    assert f"the file has {len(before):,} bytes" in message
    assert "Delete it" in message
    assert "put the archive" not in message and "offline" not in message
    assert cifar_archive.read_bytes() == before  # left for the user to delete


def test_a_root_that_is_a_file_is_refused_before_any_download(tmp_path) -> None:
    (tmp_path / "data").write_text("notes")
    with pytest.raises(ConfigError, match=r"^data\.source\.root=.*data is a file, not a folder"):
        TorchvisionSource("cifar10", tmp_path / "data", download=True)
    assert (tmp_path / "data").read_text() == "notes"
