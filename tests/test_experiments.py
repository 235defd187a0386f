"""Named experiments (configs/experiment/) compose as documented and train."""

from pathlib import Path

import pytest
import torch

from convnet.build import build_model
from convnet.train import train
from tests.compose import TINY_SHAPES, compose_config


def test_cifar10_fast_is_pages_recipe_on_cifar10(tmp_path: Path) -> None:
    cfg = compose_config("train", ["experiment=cifar10_fast"], tmp_path)
    assert cfg.data.source.name == "cifar10"
    assert cfg.data.batch_size == 512 and cfg.data.flip and cfg.data.crop_padding == 4
    assert cfg.optimizer.nesterov and cfg.optimizer.lr == 0.4
    assert cfg.module.label_smoothing == 0.2 and cfg.module.test_time_flip
    assert not cfg.callbacks  # no pictures, no checkpoints
    with torch.device("meta"):
        network = build_model(cfg.model)
    assert sum(p.numel() for p in network.parameters()) == 6_573_120  # Page's ResNet-9


@pytest.mark.slow
def test_cifar10_fast_trains_on_shapes(tmp_path: Path) -> None:
    overrides = ["experiment=cifar10_fast", "data=shapes", *TINY_SHAPES, "debug=fast"]
    overrides += ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]
    cfg = compose_config(
        "train", [*overrides, "data.batch_size=16", "data.eval_batch_size=16"], tmp_path
    )
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert "test/acc" in metrics  # tested on the final weights: there is no checkpoint
    assert not (tmp_path / "run" / "checkpoints").exists()
