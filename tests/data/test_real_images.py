"""Real images as users bring them: scikit-learn's digits as a folder of PNGs, and MNIST's
IDX files put in place by hand, each trained offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from convnet.data.digits import DigitsSource
from convnet.train import train
from tests.compose import compose_config
from tests.data.conftest import write_fake_mnist

QUIET = ["callbacks=minimal", "callbacks.rich_progress_bar=null", "logger=none"]


def _digits_as_png_folder(root: Path) -> np.ndarray:
    """Write the digits' train/val/test splits as 8x8 greyscale PNGs in root/<split>/<digit>/;
    return the training images (N, 8, 8) uint8."""
    splits = DigitsSource().load()
    for name, split in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        for i, (image, label) in enumerate(zip(split.images, split.labels, strict=True)):
            folder = root / name / splits.classes[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0].numpy()).save(folder / f"{i}.png")
    return splits.train.images[:, 0].numpy()


@pytest.mark.slow
def test_a_folder_of_digit_pngs_trains_with_only_its_root_given(tmp_path: Path) -> None:
    train_images = _digits_as_png_folder(tmp_path / "digits")
    cfg = compose_config(
        "train",
        [
            "data=imagefolder",
            f"data.source.root={tmp_path / 'digits'}",
            "trainer.max_epochs=3",
            *QUIET,
        ],
        tmp_path,
    )
    metrics = train(cfg)
    stored = OmegaConf.load(tmp_path / "run" / "config.yaml").data
    assert stored.num_classes == 10 and stored.in_channels == 1
    assert list(stored.image_size) == [32, 32]  # 8x8, raised to the zoo's 32 px
    pixels = train_images / 255
    assert stored.mean[0] == pytest.approx(pixels.mean(), abs=5e-5)
    assert stored.std[0] == pytest.approx(pixels.std(), abs=5e-5)
    # As data=digits after the same 3 epochs (tests/test_train_end_to_end.py); chance is 0.1.
    assert metrics["test/acc"] > 0.8


def test_mnist_idx_files_put_in_place_train_offline(tmp_path: Path) -> None:
    # The files as torchvision lays them out; the autouse fixture refuses every connection.
    written = write_fake_mnist(tmp_path / "data", "MNIST")
    cfg = compose_config(
        "train",
        [
            "data=mnist",
            "data.batch_size=8",
            "data.eval_batch_size=64",
            "trainer.max_epochs=1",
            *QUIET,
        ],
        tmp_path,
    )
    metrics = train(cfg)
    # Random pixels and labels: nothing to learn, but every split was read and scored.
    assert 0 <= metrics["test/acc"] <= 1 and np.isfinite(metrics["val/loss"])
    # val takes one image of each class (10% of 50, stratified): 40 train, 5 batches of 8.
    assert metrics["train/samples"] == len(written.train_labels) - 10
