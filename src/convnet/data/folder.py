"""Any folder of class sub-folders, streamed from disk as uint8 (3, H, W) images of one size.

Two layouts are understood:

    root/train/<class>/<image>, root/val/<class>/<image> and optionally root/test/<class>/<image>
    root/<class>/<image>            (val is a seeded, stratified share of it; no test split)

A root with train/ but no val/ gets its val split carved out of train/ the same way.

Unreadable files (truncated, corrupt, or not images despite their extension) are handled
in two places. Reading every file's header before training gives an exact count and lets
`on_bad_file="error"` fail before the first step, but costs one file open per image: fine
for a few thousand images, minutes for ImageNet-sized folders. So folders up to
`HEADER_CHECK_LIMIT` images are checked up front, and every folder is also guarded while
reading: a file that fails to decode mid-epoch is replaced by the next readable one in the
split (skip) or stops the run naming the file (error), so a bad file never crashes an epoch.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS

from convnet import keys
from convnet.checks import ConfigError, to_pair
from convnet.data.files import ImageFileDataset, Sample, header_problem
from convnet.data.splits import Splits, check_val_fraction, stratified_split

log = logging.getLogger(__name__)

HEADER_CHECK_LIMIT = 20_000
BAD_FILE_MODES = ("skip", "error")
_LAYOUT_HINT = "lay it out as <root>/<class>/<image> or <root>/train/<class>/<image>"


@dataclass(frozen=True)
class FolderSamples:
    """The (path, label) of every readable image of each split, and the class names."""

    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample] | None


class ImageFolderSource:
    """Images in class sub-folders, split on disk (train/, val/, test/) or split here.

    Args:
        root: the folder; see the module docstring for the two layouts.
        image_size: every image is resized to this, an int (square) or [height, width];
            None until convnet.data.describe has measured the folder (it is then required).
        val_fraction: share of each class held out for val when there is no val/ folder.
        split_seed: seed of that hold-out.
        extensions: file endings that count as images (default: torchvision's IMG_EXTENSIONS).
        on_bad_file: "skip" unreadable files with a warning, or "error" naming the file.
        channels: 3 reads every image as RGB, 1 as greyscale (None: 3).
        stats_cache: folder where convnet.data.describe keeps the measured mean and std of
            training splits (None: measured again each time).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: int | Sequence[int] | None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        extensions: Sequence[str] | None = None,
        on_bad_file: str = "skip",
        channels: int | None = None,
        stats_cache: str | os.PathLike[str] | None = None,
    ) -> None:
        if on_bad_file not in BAD_FILE_MODES:
            raise ValueError(
                f"data.source.on_bad_file must be one of {', '.join(BAD_FILE_MODES)}, "
                f"got {on_bad_file!r}"
            )
        if channels not in (None, 1, 3):
            raise ConfigError(
                f"data.in_channels={channels}: images in folders are read as 1 channel "
                "(greyscale) or 3 (RGB); set data.in_channels=1 or 3, or null to take it from "
                "the images"
            )
        self.root = Path(root).expanduser()
        self.image_size = (
            None if image_size is None else to_pair(image_size, "data.source.image_size")
        )
        self.channels = channels or 3
        self.stats_cache = None if stats_cache is None else Path(stats_cache).expanduser()
        self.val_fraction = check_val_fraction(val_fraction)
        self.split_seed = split_seed
        self.extensions = tuple(
            ext.lower() if ext.startswith(".") else f".{ext.lower()}"
            for ext in (extensions or IMG_EXTENSIONS)
        )
        self.on_bad_file = on_bad_file

    def prepare(self) -> None:
        """Do nothing: the images are already on disk."""

    def load(self) -> Splits:
        """Return train, val and (when root/test/ exists) test Datasets and the class names."""
        if self.image_size is None:
            raise ConfigError(
                f"{keys.IMAGE_SIZE} is null: give it (e.g. {keys.IMAGE_SIZE}=[64,64]), or let a "
                "training run take it from the images (convnet.data.describe)"
            )
        found = self.split_samples()
        log.info(
            "%s: %d train, %d val, %s test images in %d classes",
            self.root,
            len(found.train),
            len(found.val),
            len(found.test) if found.test is not None else "no",
            len(found.classes),
        )
        return Splits(
            train=self._dataset(found.train),
            val=self._dataset(found.val),
            test=self._dataset(found.test) if found.test is not None else None,
            classes=found.classes,
        )

    def split_samples(self) -> FolderSamples:
        """Return the class names and the (path, label) of every readable image of each split."""
        _check_root(self.root)
        split_dir = self.root / "train"
        layout_is_split = split_dir.is_dir()
        if not layout_is_split:
            split_dir = self.root
        classes = _class_folders(split_dir)
        class_to_idx = {name: index for index, name in enumerate(classes)}
        samples = self._scan(split_dir, classes, class_to_idx, require_every_class=True)
        val_samples = test_samples = None
        if layout_is_split:
            _warn_about_unknown_folders(self.root)
            val_samples = self._scan_optional(self.root / "val", class_to_idx, split_dir)
            test_samples = self._scan_optional(self.root / "test", class_to_idx, split_dir)
        if val_samples is None:
            labels = torch.tensor([label for _, label in samples])
            fractions = [1 - self.val_fraction, self.val_fraction]
            train_indices, val_indices = stratified_split(labels, fractions, self.split_seed)
            val_samples = [samples[i] for i in val_indices]
            samples = [samples[i] for i in train_indices]
        return FolderSamples(classes, samples, val_samples, test_samples)

    def _dataset(self, samples: list[Sample]) -> ImageFileDataset:
        assert self.image_size is not None
        return ImageFileDataset(samples, self.image_size, self.on_bad_file, self.channels)

    def _scan_optional(
        self, split_dir: Path, class_to_idx: dict[str, int], train_dir: Path
    ) -> list[Sample] | None:
        """Return the samples of val/ or test/, labelled like train/, or None if it is absent."""
        if not split_dir.is_dir():
            return None
        classes = _class_folders(split_dir, min_classes=1)
        unknown = [name for name in classes if name not in class_to_idx]
        if unknown:
            raise ValueError(
                f"class folders in {split_dir} that are not in {train_dir}: {', '.join(unknown)}; "
                f"add training images for them to {train_dir} or remove them from {split_dir}"
            )
        missing = [name for name in class_to_idx if name not in classes]
        if missing:
            # Labels stay those of train/; only the scores cover fewer classes.
            log.warning(
                "%s has no folder for %d of the %d classes (%s): its accuracy covers only the "
                "others; add images of every class to %s for a score over all of them",
                split_dir,
                len(missing),
                len(class_to_idx),
                ", ".join(missing[:10]),
                split_dir,
            )
        return self._scan(split_dir, classes, class_to_idx, require_every_class=False)

    def _scan(
        self,
        split_dir: Path,
        classes: list[str],
        class_to_idx: dict[str, int],
        require_every_class: bool,
    ) -> list[Sample]:
        """Return (path, label) for every image file under split_dir/<class>/, checked."""
        samples: list[Sample] = []
        other_files: Counter[str] = Counter()
        for name in classes:
            for path in _files_under(split_dir / name):
                suffix = Path(path).suffix.lower()
                if suffix in self.extensions:
                    samples.append((path, class_to_idx[name]))
                else:
                    other_files[suffix or "(no extension)"] += 1
        if other_files:
            log.info("ignoring files in %s that are not images: %s", split_dir, dict(other_files))
        if not samples:
            found = f"only {dict(other_files)}" if other_files else "no files at all"
            raise ValueError(
                f"no image files in the class folders of {split_dir} (found {found}); image files "
                f"end in one of {', '.join(self.extensions)} (set data.source.extensions to change)"
            )
        if require_every_class:
            empty = sorted(set(classes) - {classes[label] for _, label in samples})
            if empty:
                raise ValueError(
                    f"class folders in {split_dir} without image files: {', '.join(empty)}; "
                    "add images or remove those folders"
                )
        return self._drop_unreadable(samples, split_dir)

    def _drop_unreadable(self, samples: list[Sample], split_dir: Path) -> list[Sample]:
        """Return the samples whose headers read, when there are few enough to check up front."""
        if len(samples) > HEADER_CHECK_LIMIT:
            log.info(
                "%s holds %d images (over %d): unreadable files are found while reading",
                split_dir,
                len(samples),
                HEADER_CHECK_LIMIT,
            )
            return samples
        bad = {path: problem for path, _ in samples if (problem := header_problem(path))}
        if not bad:
            return samples
        listed = "; ".join(f"{path} ({problem})" for path, problem in list(bad.items())[:10])
        if self.on_bad_file == "error":
            raise ValueError(
                f"{len(bad)} unreadable image file(s) in {split_dir}: {listed}; fix or delete "
                "them, or set data.source.on_bad_file=skip to skip them"
            )
        log.warning("skipping %d unreadable image file(s) in %s: %s", len(bad), split_dir, listed)
        return [sample for sample in samples if sample[0] not in bad]


def _check_root(root: Path) -> None:
    """Raise when `root` is missing, a file, or empty, saying what to do instead."""
    if not root.exists():
        raise FileNotFoundError(
            f"image folder {root} does not exist; set data.source.root to a folder and "
            f"{_LAYOUT_HINT}"
        )
    if not root.is_dir():
        raise NotADirectoryError(f"data.source.root {root} is a file, not a folder")
    if not _visible_entries(root):
        raise ValueError(f"image folder {root} is empty; {_LAYOUT_HINT}")


def _visible_entries(folder: Path) -> list[str]:
    # Dot-entries (.DS_Store, .ipynb_checkpoints, ._x.jpg) are tool debris, never data.
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def _class_folders(split_dir: Path, min_classes: int = 2) -> list[str]:
    """Return the sorted sub-folder names of split_dir, checked to be at least `min_classes`."""
    classes = [name for name in _visible_entries(split_dir) if (split_dir / name).is_dir()]
    if not classes:
        files = ", ".join(_visible_entries(split_dir)[:3]) or "nothing"
        raise ValueError(
            f"{split_dir} has no class folders (found {files}); put each class's images in a "
            f"sub-folder named after the class: {split_dir}/<class>/<image>"
        )
    if len(classes) < min_classes:
        raise ValueError(
            f"{split_dir} has only one class folder ({classes[0]}); a classifier needs at least "
            "two classes: add a sub-folder of images for every class"
        )
    return classes


def _files_under(folder: Path) -> list[str]:
    """Return every visible file under `folder`, in sorted order, following links."""
    found = []
    for directory, subfolders, files in os.walk(folder, followlinks=True):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found.extend(os.path.join(directory, name) for name in sorted(files) if name[0] != ".")
    return found


def _warn_about_unknown_folders(root: Path) -> None:
    unknown = [
        name
        for name in _visible_entries(root)
        if (root / name).is_dir() and name not in ("train", "val", "test")
    ]
    if unknown:
        log.warning(
            "ignoring folders in %s other than train/, val/ and test/: %s", root, ", ".join(unknown)
        )
