"""Image files one at a time: a Dataset over (path, label) samples, and the check that a
file can be read at all (convnet.data.folder runs it over a folder before training)."""

from __future__ import annotations

import functools
import logging
import os

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F

from convnet.data.images import read_image

log = logging.getLogger(__name__)

Sample = tuple[str, int]


class ImageFileDataset(Dataset):
    """Items are (uint8 (channels, H, W) image resized to `image_size`, int label) from files."""

    def __init__(
        self,
        samples: list[Sample],
        image_size: tuple[int, int],
        on_bad_file: str = "skip",
        channels: int = 3,
    ) -> None:
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.image_size = image_size
        self.on_bad_file = on_bad_file
        self.channels = channels
        self._skipped: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # A bad file is replaced by the next readable one; samples are grouped by class, so
        # that is almost always an image of the same class.
        for offset in range(len(self.samples)):
            path, label = self.samples[(index + offset) % len(self.samples)]
            try:
                image = read_image(path, self.channels)
            # Decoders raise many exception types for malformed input; each means "unusable".
            except Exception as err:
                if self.on_bad_file == "error":
                    raise ValueError(
                        f"cannot read image {path} ({err}); fix or delete the file, or set "
                        "data.source.on_bad_file=skip to skip unreadable files"
                    ) from err
                self._note_skipped(path, err)
                continue
            if tuple(image.shape[1:]) != self.image_size:
                image = F.resize(image, list(self.image_size), antialias=True)
            return image, label
        raise ValueError(f"none of the {len(self.samples)} image files of this split can be read")

    def _note_skipped(self, path: str, err: Exception) -> None:
        if path in self._skipped:
            return
        self._skipped.add(path)
        log.warning(
            "skipped unreadable image %s (%s); %d file(s) skipped so far by this process",
            path,
            err,
            len(self._skipped),
        )


def header_problem(path: str) -> str | None:
    """Return why the image file at `path` cannot be read, or None when it looks fine.

    Remembered per file version (path, size, modification time) for the process: a run on
    an image folder checks its files when it describes the folder and again when it loads
    it, and the second check then opens nothing.
    """
    stat = os.stat(path)
    return _header_problem(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1 << 20)
def _header_problem(path: str, size: int, mtime_ns: int) -> str | None:
    try:
        with Image.open(path) as image:
            image.verify()  # reads the header (and for PNG every chunk's checksum), not pixels
    # PIL raises many exception types for malformed input; each means "unusable".
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None
