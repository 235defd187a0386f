"""CIFAR-10, CIFAR-100, MNIST and Fashion-MNIST from torchvision, held as uint8 tensors."""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import shutil
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from convnet.checks import output_folder
from convnet.data.splits import Splits, TensorSplit, check_val_fraction, stratified_split

log = logging.getLogger(__name__)

DATASETS: dict[str, type[datasets.VisionDataset]] = {
    "cifar10": datasets.CIFAR10,
    "cifar100": datasets.CIFAR100,
    "mnist": datasets.MNIST,
    "fashion_mnist": datasets.FashionMNIST,
}
_TITLES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
}


class CorruptArchiveError(OSError):
    """A downloaded archive that fails its checksum; the message names it and says to delete it."""


class TorchvisionSource:
    """One of torchvision's classic data sets, stored under `root` and loaded into memory.

    Args:
        name: cifar10, cifar100, mnist or fashion_mnist.
        root: folder that holds the data sets in torchvision's layout (data/cifar-10-batches-py/).
        download: fetch the files in `prepare()` when they are not there yet.
        val_fraction: share of each class of the official training set held out for validation.
        split_seed: seed of that hold-out; the same seed always gives the same split.
    """

    def __init__(
        self,
        name: str,
        root: str | os.PathLike[str],
        download: bool = True,
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ) -> None:
        if name not in DATASETS:
            raise ValueError(
                f"data.source.name must be one of {', '.join(DATASETS)}, got {name!r}; "
                "for a folder of images use convnet.data.folder.ImageFolderSource"
            )
        self.name = name
        self.root = output_folder(Path(root).expanduser(), "data.source.root")
        self.download = download
        self.val_fraction = check_val_fraction(val_fraction)
        self.split_seed = split_seed
        self._dataset_class = DATASETS[name]
        self._title = _TITLES[name]

    def prepare(self) -> None:
        """Download the files if asked to and they are missing; unpack local MNIST .gz files."""
        if self._is_mnist_family():
            _gunzip_missing(self._folder(), self._file_names())
        if not self.download:
            return
        made = _missing_folders(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            # The test set is the smaller half; building it downloads both halves when needed.
            self._dataset_class(str(self.root), train=False, download=True)
        except (URLError, OSError, RuntimeError) as err:
            _remove_if_empty(made)  # a failed download leaves no empty folders of its own
            # torchvision tries to download again over an archive that fails its checksum.
            problem = self._archive_problem()
            if problem:
                raise CorruptArchiveError(problem) from err
            # torchvision's own message spans lines (a mirror tried, its error): one line here.
            reason = " ".join(str(err).split())
            raise FileNotFoundError(
                f"{self._title} could not be downloaded ({type(err).__name__}: {reason}); "
                "the machine appears to be offline or the server unreachable. "
                f"To add it by hand, {self._where_to_put_files()}"
            ) from err

    def load(self) -> Splits:
        """Return train (minus a stratified val share), val and the official test set."""
        if self._is_mnist_family():
            _gunzip_missing(self._folder(), self._file_names())
        missing = [name for name in self._file_names() if not (self._folder() / name).is_file()]
        if missing and (problem := self._archive_problem()):
            raise CorruptArchiveError(problem)
        if missing:
            raise FileNotFoundError(
                f"{self._title} is not in {self._folder()}/ (missing: {', '.join(missing)}). "
                "Set data.source.download=true to fetch it, or by hand "
                f"{self._where_to_put_files()}"
            )
        try:
            train_set = self._dataset_class(str(self.root), train=True, download=False)
            test_set = self._dataset_class(str(self.root), train=False, download=False)
        except RuntimeError as err:
            raise FileNotFoundError(
                f"{self._title} files in {self._folder()}/ are corrupted or from another release "
                f"(torchvision: {err}). Delete them, then "
                f"{self._where_to_put_files()}"
            ) from err
        images, labels = _as_tensors(train_set)
        train_indices, val_indices = stratified_split(
            labels, [1 - self.val_fraction, self.val_fraction], self.split_seed
        )
        test_images, test_labels = _as_tensors(test_set)
        log.info(
            "%s: %d train, %d val, %d test images of shape %s",
            self._title,
            len(train_indices),
            len(val_indices),
            len(test_labels),
            tuple(images.shape[1:]),
        )
        return Splits(
            train=TensorSplit(images[train_indices], labels[train_indices]),
            val=TensorSplit(images[val_indices], labels[val_indices]),
            test=TensorSplit(test_images, test_labels),
            classes=[_short_class_name(name) for name in train_set.classes],
        )

    def _is_mnist_family(self) -> bool:
        return issubclass(self._dataset_class, datasets.MNIST)

    def _folder(self) -> Path:
        """Return the folder where torchvision looks for this data set's files."""
        if self._is_mnist_family():
            return self.root / self._dataset_class.__name__ / "raw"
        return self.root / self._dataset_class.base_folder

    def _file_names(self) -> list[str]:
        """Return the names of the files that must be in `_folder()`."""
        cls = self._dataset_class
        if self._is_mnist_family():
            return [name.removesuffix(".gz") for name, _ in cls.resources]
        return [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]

    def _archive_problem(self) -> str | None:
        """Return why the archive in `root` cannot be unpacked (its checksum fails), or None."""
        if self._is_mnist_family():  # its .gz files are unpacked one by one (_gunzip_missing)
            return None
        cls = self._dataset_class
        archive = self.root / cls.filename
        if not archive.is_file() or check_integrity(str(archive), cls.tgz_md5):
            return None
        return (
            f"{archive} failed its MD5 checksum (expected {cls.tgz_md5}; the file has "
            f"{archive.stat().st_size:,} bytes): it is corrupt or partial, e.g. from an "
            "interrupted download. Delete it, then run again with data.source.download=true "
            f"to fetch it, or copy a complete {cls.filename} there from {cls.url}"
        )

    def _where_to_put_files(self) -> str:
        """Return a sentence saying which files go where and which URLs they come from."""
        cls = self._dataset_class
        folder, files = self._folder(), ", ".join(self._file_names())
        if self._is_mnist_family():
            first_mirror, *other_mirrors = cls.mirrors
            urls = ", ".join(f"{first_mirror}{name}" for name, _ in cls.resources)
            alternatives = f" (other mirrors: {', '.join(other_mirrors)})" if other_mirrors else ""
            return (
                f"put {files} (or the same names ending in .gz) in {folder}/. "
                f"They come from {urls}{alternatives}."
            )
        return (
            f"put {files} in {folder}/: they are in {cls.url}, which unpacks into {self.root}/. "
            f"Or put the archive {cls.filename} itself in {self.root}/ and keep "
            "data.source.download=true: it is checked and unpacked without downloading."
        )


def _as_tensors(dataset: datasets.VisionDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Return a torchvision data set's images as uint8 (N, C, H, W) and labels as int64 (N,)."""
    images = torch.as_tensor(np.asarray(dataset.data), dtype=torch.uint8)
    # MNIST: (N, H, W) -> (N, 1, H, W); CIFAR: (N, H, W, C) -> (N, C, H, W)
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return images.contiguous(), labels


def _short_class_name(name: str) -> str:
    """Return a class name short enough for plot axes: "0 - zero" -> "0", "a_b" -> "a b"."""
    return name.split(" - ")[0].replace("_", " ")


def _gunzip_missing(folder: Path, names: list[str]) -> None:
    """Unpack folder/name.gz into folder/name wherever only the gzipped copy is present."""
    for name in names:
        target, packed = folder / name, folder / f"{name}.gz"
        if target.exists() or not packed.is_file():
            continue
        # Write under a temporary name first, so a process that loads at the same time never
        # reads a half-written file.
        partial = folder / f"{name}.partial-{os.getpid()}"
        try:
            with gzip.open(packed, "rb") as source, open(partial, "wb") as destination:
                shutil.copyfileobj(source, destination)
        except (OSError, EOFError) as err:
            partial.unlink(missing_ok=True)
            raise FileNotFoundError(
                f"{packed} is not a readable gzip file ({err}); delete it and download it again"
            ) from err
        os.replace(partial, target)


def _missing_folders(folder: Path) -> list[Path]:
    """Return `folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_if_empty(made: list[Path]) -> None:
    """Remove the folders of `made` (deepest first) and the folders inside them, where they
    hold no file; what holds a file (a partial download) is left."""
    if not made:
        return
    for inside, _, _ in sorted(os.walk(made[0]), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):
            os.rmdir(inside)
    for folder in made[1:]:
        with contextlib.suppress(OSError):
            folder.rmdir()
