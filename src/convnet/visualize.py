"""The TensorBoard pictures of a checkpoint, written as PNG files (scripts/visualize.py)."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from convnet.build import build_model, build_module, pick_device
from convnet.callbacks.base import PictureCallback, PictureContext
from convnet.callbacks.mistakes import Mistakes
from convnet.callbacks.render import save_png
from convnet.callbacks.samples import read_image_file
from convnet.callbacks.state import left_as_found
from convnet.checkpoints import check_compatible
from convnet.checks import keep_existing, output_folder
from convnet.config import ConfigError
from convnet.console import per_class_table, show
from convnet.evaluate import load_checkpoint, run_config

log = logging.getLogger(__name__)


def picture_callbacks(callbacks_cfg: DictConfig | None) -> dict[str, PictureCallback]:
    """Return the picture callbacks of a callbacks config by key (others are skipped)."""
    chosen = {}
    for key, node in (callbacks_cfg or {}).items():
        if node and issubclass(get_class(node._target_), PictureCallback):
            chosen[key] = instantiate(node)
    if not chosen:
        raise ConfigError(
            "no picture callback in `callbacks`: use callbacks=pictures (the default) or "
            "name at least one, e.g. +callbacks.filters._target_=convnet.callbacks.FilterImages"
        )
    return chosen


def png_path(folder: Path, tag: str) -> Path:
    """Return the PNG file of a TensorBoard tag: `stage1/filters` -> stage1/filters.png."""
    *folders, name = tag.split("/")
    return folder.joinpath(*folders, f"{name}.png")


def visualize(cfg: DictConfig) -> list[Path]:
    """Write the pictures of `cfg.ckpt_path` as PNG files into `cfg.output_dir`, each with
    its TensorBoard description beside it (`stage1/filters.png`, `stage1/filters.txt`);
    return the PNG files. A checkpoint holds no weights from the start of training, so
    there are no `filters/change` pictures.

    The model and data are rebuilt from the config stored in the checkpoint (`+data.*`
    keys of cfg override its data); `cfg.image` replaces the fixed validation images.
    """
    folder = output_folder(cfg.output_dir, "output_dir")
    # Pictures already there are the user's (of another checkpoint, perhaps).
    earlier = sorted(folder.rglob("*.png")) if folder.is_dir() else []
    keep_existing(earlier, "output_dir", folder, cfg.get("overwrite", False))
    # Before the checkpoint and the data are read: the device, the pictures and the image.
    device = pick_device(cfg.get("device", "auto"))
    callbacks = picture_callbacks(cfg.get("callbacks"))
    image = Path(cfg.image) if cfg.get("image") else None
    if image is not None:
        read_image_file(image)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    run = run_config(checkpoint, cfg.get("data"), cfg.ckpt_path)
    datamodule = instantiate(run.data)
    datamodule.setup("fit")
    module = build_module(run, build_model(run.model, pretrained_weights=False))
    check_compatible(checkpoint["state_dict"], module, cfg.ckpt_path)
    module.load_state_dict(checkpoint["state_dict"])
    network = module.model.to(device)
    context = PictureContext(network, datamodule, device, image=image)
    written = []
    for key, callback in callbacks.items():
        with left_as_found(network):
            pictures = callback.pictures(context)
        for picture in pictures:
            path = save_png(picture.image, png_path(folder, picture.tag))
            path.with_suffix(".txt").write_text(picture.description + "\n")
            written.append(path)
        log.info("%s: %d pictures", key, len(pictures))
        if isinstance(callback, Mistakes) and callback.accuracy is not None:
            title = "validation accuracy per class"
            show(per_class_table(title, datamodule.classes, callback.accuracy.tolist()))
    log.info("%d pictures written to %s", len(written), folder)
    return written
