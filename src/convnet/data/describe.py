"""What a folder of images says about itself: the data keys a run leaves null.

`data=imagefolder` leaves data.num_classes, data.in_channels, data.image_size, data.mean
and data.std null. Before anything is built, `complete_data_config` fills each null one
from the folder and writes it into the run config, so config.yaml and the checkpoints hold
the values the run trained with (and predict, eval and export read them from there):

- num_classes: the number of class folders;
- in_channels: 1 when every training image is greyscale (a greyscale mode, or RGB with
  equal channels), else 3; or one per value of a given data.mean;
- image_size: the median training image, scaled so its shorter side is at least
  `MIN_SIDE` (the size the zoo's CIFAR-style networks are built for) and at most
  `MAX_SIDE` (ImageNet's training size: larger costs compute, seldom accuracy);
- mean and std: of the training split's pixels in 0..1, per channel, over at most
  `STATS_SAMPLE` images (a seeded sample of larger splits), cached by the files' paths,
  sizes and modification times, so the folder is read once.

A resumed run takes them from its checkpoint's config instead: it continues with the
normalisation it started with, even if the folder has changed since.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from convnet import checks, keys
from convnet.checks import ConfigError, refuse
from convnet.config import RULES
from convnet.data.folder import FolderSamples, ImageFolderSource
from convnet.data.images import read_image
from convnet.data.splits import check_class_count

log = logging.getLogger(__name__)

INFERRED = (keys.NUM_CLASSES, keys.IN_CHANNELS, keys.IMAGE_SIZE, keys.MEAN, keys.STD)
MIN_SIDE = 32
MAX_SIDE = 224
STATS_SAMPLE = 5000
# Imbalance (largest class over smallest) from which the summary warns.
IMBALANCE_WARNING = 3.0
_CACHE_VERSION = 1


@dataclass(frozen=True)
class PixelStats:
    """What reading a split's images measured. mean and std are per channel (RGB, or one
    for greyscale), of pixel values in 0..1 (population std, as numpy's std)."""

    images: int
    median_size: tuple[int, int]
    grey: bool  # every image had equal channels
    mean: list[float]
    std: list[float]


def measure(paths: list[str], channels: int | None) -> PixelStats:
    """Read every image at `paths` (as greyscale when `channels` is 1, else RGB) and return
    their median size, whether all are grey, and their pixels' mean and std."""
    read_as = 1 if channels == 1 else 3
    total = np.zeros(read_as)
    squares = np.zeros(read_as)
    pixels = 0
    sizes: list[tuple[int, int]] = []
    grey = True
    unreadable = 0
    for path in paths:
        try:
            image = read_image(path, read_as).numpy()
        # Decoders raise many exception types; the data set skips or refuses the same file.
        except Exception:
            unreadable += 1
            continue
        sizes.append(image.shape[1:])
        values = image.reshape(read_as, -1).astype(np.float64) / 255
        total += values.sum(axis=1)
        squares += np.square(values).sum(axis=1)
        pixels += values.shape[1]
        grey = grey and (
            read_as == 1 or bool((image[0] == image[1]).all() & (image[1] == image[2]).all())
        )
    if not sizes:
        raise ValueError(f"none of the {len(paths)} training images could be read")
    if unreadable:
        log.warning("%d training image(s) could not be read for the statistics", unreadable)
    mean = total / pixels
    std = np.sqrt(np.maximum(squares / pixels - np.square(mean), 0))
    heights, widths = zip(*sizes, strict=True)
    median = (int(np.median(heights)), int(np.median(widths)))
    return PixelStats(len(sizes), median, grey, mean.tolist(), std.tolist())


def _sample(paths: list[str]) -> list[str]:
    """Return all of `paths`, or a seeded sample of STATS_SAMPLE of them (in their order)."""
    if len(paths) <= STATS_SAMPLE:
        return paths
    chosen = np.random.default_rng(0).choice(len(paths), STATS_SAMPLE, replace=False)
    return [paths[i] for i in sorted(chosen)]


def _cache_key(paths: list[str], channels: int | None) -> str:
    digest = hashlib.sha256(json.dumps([_CACHE_VERSION, channels]).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _read_cached(path: Path) -> PixelStats | None:
    """Return the statistics stored at `path`, or None when absent or not what convnet wrote."""
    try:
        stored = json.loads(path.read_text())
        stats = PixelStats(
            images=int(stored["images"]),
            median_size=(int(stored["median_size"][0]), int(stored["median_size"][1])),
            grey=bool(stored["grey"]),
            mean=[float(v) for v in stored["mean"]],
            std=[float(v) for v in stored["std"]],
        )
    except FileNotFoundError:
        return None
    # A damaged or foreign file is measured again and replaced, never trusted.
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        log.warning("ignoring the unreadable statistics cache %s (%s)", path, error)
        return None
    if len(stats.mean) not in (1, 3) or len(stats.std) != len(stats.mean):
        return None
    return stats


def _write_cached(path: Path, stats: PixelStats) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(asdict(stats)))
        os.replace(partial, path)  # whole or absent: a reader never sees half a file
    except OSError as error:  # a read-only cache costs a second reading next time, no more
        log.warning("could not cache the data statistics in %s (%s)", path.parent, error)


def training_stats(
    source: ImageFolderSource, train: list[str], channels: int | None
) -> tuple[PixelStats, Path | None]:
    """Return the statistics of the training images at `train` and the cache file they were
    read from or written to (None without a cache)."""
    paths = _sample(train)
    cache = None
    if source.stats_cache is not None:
        cache = source.stats_cache / "folder-stats" / f"{_cache_key(paths, channels)}.json"
        cached = _read_cached(cache)
        if cached is not None:
            return cached, cache
    stats = measure(paths, channels)
    if cache is not None:
        _write_cached(cache, stats)
    return stats, cache


def image_size_for(median: tuple[int, int]) -> tuple[list[int], str]:
    """Return the image size to train at for images of `median` size, and why."""
    height, width = median
    shorter = min(height, width)
    if shorter < MIN_SIDE:
        scale, why = MIN_SIDE / shorter, f"raised to a shorter side of {MIN_SIDE} px"
    elif shorter > MAX_SIDE:
        scale, why = MAX_SIDE / shorter, f"lowered to a shorter side of {MAX_SIDE} px"
    else:
        scale, why = 1.0, "as it is"
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    return size, f"the median training image is {height}x{width}, {why}"


def _given(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _checked(key: str, value: Any) -> Any:
    """Return a value a checkpoint's config gave for `key`, refused unless it is one."""
    if key in (keys.MEAN, keys.STD):
        if not (
            isinstance(value, list) and value and all(isinstance(v, float | int) for v in value)
        ):
            raise refuse(key, value, "a list of numbers, one per channel")
        return value
    checked = RULES[key](value, key)
    return list(checked) if isinstance(checked, tuple) else checked


def _set(cfg: DictConfig, key: str, value: Any) -> None:
    OmegaConf.update(cfg, key, value, merge=False, force_add=True)


def complete_data_config(cfg: DictConfig, stored: Mapping[str, Any] | None = None) -> None:
    """Fill the null data keys of `cfg` (INFERRED) from the data, in place, and log what
    was taken from where; then a null data.crop_padding from the image size. `stored`: the
    data config of the run a resumed run continues, whose values it takes instead. Raises
    ConfigError when a null key cannot be inferred, or a given data.num_classes disagrees
    with the class folders."""
    missing = [key for key in INFERRED if _given(cfg, key) is None]
    if missing and not _from_stored(cfg, stored, missing):
        source = instantiate(cfg.data.source)
        if not isinstance(source, ImageFolderSource):
            raise ConfigError(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} null, and only "
                f"image folders (data=imagefolder) give their own; set {missing[0]}=... for "
                f"{type(source).__name__}"
            )
        _describe(cfg, source, missing)
    if _given(cfg, keys.CROP_PADDING) is None and _given(cfg, keys.IMAGE_SIZE) is not None:
        padding = crop_padding_for(_given(cfg, keys.IMAGE_SIZE))
        _set(cfg, keys.CROP_PADDING, padding)
        log.info("data: %s=%d, 1/16 of the images' shorter side", keys.CROP_PADDING, padding)


def crop_padding_for(image_size: Any) -> int:
    """Return the random-crop padding for images of `image_size`: 1/16 of the shorter side.

    CIFAR's 4 px at 32 (1/8) shifts an upsampled 8x8 digit by a whole pixel of its own and
    cost 0.6 points on digits (5 seeds each: 0.9874 against 0.9911 at 1/16 and 0.9933 for
    data=digits' 1 px); 1/16 is 2 px at 32, 4 at 64, 14 at 224.
    """
    height, width = checks.to_pair(image_size, keys.IMAGE_SIZE)
    return max(1, round(min(height, width) / 16))


def _from_stored(cfg: DictConfig, stored: Mapping[str, Any] | None, missing: list[str]) -> bool:
    """Fill `missing` from the resumed run's data config `stored`; return whether it had all."""
    if stored is None:
        return False
    run = OmegaConf.create({"data": dict(stored)})
    then = [OmegaConf.select(run, key, default=None) for key in missing]
    if any(value is None for value in then):
        return False
    for key, value in zip(missing, then, strict=True):
        plain = OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
        _set(cfg, key, _checked(key, plain))
    log.info(
        "data: %s as the run it resumes had them",
        ", ".join(f"{key}={_given(cfg, key)}" for key in missing),
    )
    return True


def _describe(cfg: DictConfig, source: ImageFolderSource, missing: list[str]) -> None:
    found = source.split_samples()
    classes = found.classes
    given_classes = _given(cfg, keys.NUM_CLASSES)
    if given_classes is not None:  # checked before the pixels are read
        check_class_count(given_classes, classes, str(source.root), "class folders")
    counts = Counter(label for _, label in found.train)
    lines = [f"data: {source.root} (taken from the images where a key is null: set it to choose)"]
    lines += _class_lines(found, counts)
    said: dict[str, str] = {keys.NUM_CLASSES: "the class folders"}
    values: dict[str, Any] = {keys.NUM_CLASSES: len(classes)}

    given_mean = _given(cfg, keys.MEAN) or _given(cfg, keys.STD)
    channels = _given(cfg, keys.IN_CHANNELS)
    if channels is None and given_mean is not None:
        channels = len(given_mean)
        said[keys.IN_CHANNELS] = f"one per value of the given {keys.MEAN}/{keys.STD}"
    if channels is None or any(key in missing for key in (keys.IMAGE_SIZE, keys.MEAN, keys.STD)):
        stats, cache = training_stats(source, [path for path, _ in found.train], channels)
        if channels is None:
            channels = 1 if stats.grey else 3
            said[keys.IN_CHANNELS] = (
                "every training image is greyscale" if stats.grey else "the images are in colour"
            )
        # Read as RGB to find out; a greyscale run normalises its one channel.
        mean, std = stats.mean[:channels], stats.std[:channels]
        values[keys.IMAGE_SIZE], said[keys.IMAGE_SIZE] = image_size_for(stats.median_size)
        values[keys.MEAN] = [round(v, 4) for v in mean]
        values[keys.STD] = [round(v, 4) for v in std]
        flat = [index for index, value in enumerate(values[keys.STD]) if value == 0]
        if flat and keys.STD in missing:
            # A channel of one value everywhere: nothing to scale, and a std of 0 divides by
            # zero. Normalised by 1, it stays the constant it is.
            values[keys.STD] = [1.0 if value == 0 else value for value in values[keys.STD]]
            log.warning(
                "the training images' %s one value in every pixel (std 0): normalised "
                "with std 1; set %s to choose",
                f"channel {flat[0]} has" if len(flat) == 1 else f"channels {flat} have",
                keys.STD,
            )
        sampled = (
            f"the {stats.images} training images"
            if stats.images == len(found.train)
            else f"a sample of {stats.images} of the {len(found.train)} training images"
        )
        where = f"; cached in {cache}" if cache is not None else ""
        said[keys.MEAN] = said[keys.STD] = f"of the pixels (0..1) of {sampled}{where}"
    values[keys.IN_CHANNELS] = channels
    for key in missing:
        _set(cfg, key, values[key])
    # One line per reason: mean and std share theirs.
    for reason in dict.fromkeys(said[key] for key in missing):
        named = ", ".join(f"{key}={_given(cfg, key)}" for key in missing if said[key] == reason)
        lines.append(f"  {named}: {reason}")
    log.info("\n".join(lines))
    _warn_about_imbalance(found, counts)


def _class_lines(found: FolderSamples, counts: Counter[int]) -> list[str]:
    listed = ", ".join(f"{name} {counts[i]}" for i, name in enumerate(found.classes[:20]))
    more = f", and {len(found.classes) - 20} more" if len(found.classes) > 20 else ""
    test = f", {len(found.test)} test" if found.test is not None else ", no test split"
    return [
        f"  {len(found.classes)} classes, training images of each: {listed}{more}",
        f"  splits: {len(found.train)} train, {len(found.val)} val{test}",
    ]


def _warn_about_imbalance(found: FolderSamples, counts: Counter[int]) -> None:
    (most, largest), (least, smallest) = counts.most_common()[0], counts.most_common()[-1]
    if smallest and largest / smallest >= IMBALANCE_WARNING:
        log.warning(
            "the classes are imbalanced: %s has %d training images, %s only %d (%.1fx); "
            "accuracy can look good while the small classes are missed: read the confusion "
            "matrix, or balance the folders",
            found.classes[most],
            largest,
            found.classes[least],
            smallest,
            largest / smallest,
        )
