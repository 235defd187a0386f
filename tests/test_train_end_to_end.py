"""Whole runs on tiny data: train, checkpoint, resume, evaluate."""

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from convnet.build import build_model
from convnet.config import ConfigError
from convnet.evaluate import evaluate
from convnet.module import BEST_KEY
from convnet.train import train
from tests.compose import compose_config

pytestmark = pytest.mark.slow

QUIET = ["callbacks.rich_progress_bar=null", "callbacks.layer_summary=null"]
SMALL_RUN = ["data.source.num_train=640", "trainer.max_epochs=3", *QUIET]
# The smallest shapes run that reliably learns: ~940 steps, ~20 s on 2 CPU cores without
# the pictures (drawn each epoch, they took 60 s more; tests/callbacks test those).
LEARNING_RUN = [
    "data.source.num_train=5000",
    "data.source.num_val=500",
    "data.batch_size=32",
    "optimizer.lr=0.05",
    "trainer.max_epochs=6",
    "callbacks=minimal",
    "callbacks.rich_progress_bar=null",
]


class StopAfterEpoch(Callback):
    """Ends fit after `epochs` epochs, once last.ckpt of that epoch is written."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def _scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_training_on_shapes_learns_and_eval_reproduces_its_metrics(
    train_config, tmp_path: Path
) -> None:
    cfg = train_config(*LEARNING_RUN)
    metrics = train(cfg)
    run = tmp_path / "run"
    assert metrics["val/acc_best"] > 0.3  # chance is 0.1
    assert metrics["test/acc"] > 0.3
    assert (run / "checkpoints" / "last.ckpt").is_file()
    val_acc = _scalars(run, "val/acc")
    assert len(val_acc) == 6  # one per epoch, read back by TensorBoard's own reader
    assert max(value for _, value in val_acc) == pytest.approx(metrics["val/acc_best"])

    best = next(p for p in (run / "checkpoints").glob("epoch*.ckpt"))
    eval_cfg = compose_config("eval", [f"ckpt_path={best}"], tmp_path, output_dir=tmp_path / "eval")
    results = evaluate(eval_cfg)
    assert results["val"]["acc"] == pytest.approx(metrics["val/acc_best"], abs=1e-6)
    assert results["test"]["acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_resuming_continues_the_same_run_to_the_same_weights(train_config, tmp_path) -> None:
    straight = train_config(*SMALL_RUN, "test=false", output_dir=tmp_path / "straight")
    straight_metrics = train(straight)
    # Interrupted after epoch 2 of 3, as if the process had been stopped there.
    stop = [f"+callbacks.stop._target_={__name__}.StopAfterEpoch", "+callbacks.stop.epochs=2"]
    first = train_config(*SMALL_RUN, "test=false", *stop, output_dir=tmp_path / "resumed")
    train(first)
    # The checkpoint holds the best val/acc of its epochs; a resumed run's best counts it.
    # It is raised here to a value no epoch reaches, which only the checkpoint can give.
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    stopped = torch.load(last, weights_only=True)
    first_two = [value for _, value in _scalars(tmp_path / "resumed", "val/acc")]
    assert stopped[BEST_KEY] == pytest.approx(max(first_two))
    torch.save({**stopped, BEST_KEY: 0.9999}, last)
    again = train_config(
        *SMALL_RUN, "test=false", "ckpt_path=last", output_dir=tmp_path / "resumed"
    )
    resumed_metrics = train(again)
    a = torch.load(tmp_path / "straight/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 30  # 3 epochs of 10 batches
    # Bit-identical: data order, augmentation and RNG all continue exactly on the CPU.
    for key, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][key], value), key
    steps = [step for step, _ in _scalars(tmp_path / "resumed", "val/acc")]
    assert len(steps) == 3 and len(set(steps)) == 3  # no epoch logged twice
    assert resumed_metrics["val/acc_best"] == pytest.approx(0.9999)
    best = max(value for _, value in _scalars(tmp_path / "straight", "val/acc"))
    assert straight_metrics["val/acc_best"] == pytest.approx(best)

    # Resuming the finished run again would train nothing: refused, nothing rewritten.
    config = tmp_path / "resumed" / "config.yaml"
    before = config.stat().st_mtime_ns
    with pytest.raises(ConfigError, match=r"all of its 3 epochs.*raise trainer\.max_epochs"):
        train(again)
    assert config.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("model", "shrink"),
    [
        # Every picture callback stays on; gradient ascent through VGG16 takes fewer steps.
        (
            "vgg16",
            ["data.batch_size=16", "data.eval_batch_size=16", "callbacks.filter_response.steps=2"],
        ),
        ("resnet18", ["model.width_multiplier=0.125"]),
    ],
)
def test_the_large_models_compose_and_train(model, shrink, train_config) -> None:
    cfg = train_config(f"model={model}", "debug=fast", "test=false", *QUIET, *shrink)
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_digits_train_and_test(tmp_path: Path) -> None:
    cfg = compose_config(
        "train",
        ["data=digits", "trainer.max_epochs=3", *QUIET],
        tmp_path,
    )
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.8


class InterruptAtStep(Callback):
    """Stops fit after `step` optimizer steps as SIGTERM would (pre-emption, `kill`)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise SIGTERMException


def _image_folder(root: Path, classes: int = 3, per_class: int = 16) -> Path:
    """Write root/{train,val}/<class>/*.png of random 8x8 RGB pixels, seeded."""
    rng = np.random.default_rng(0)
    for split, count in [("train", per_class), ("val", per_class // 4)]:
        for label in range(classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_streamed_folder_data_resumes_mid_epoch_to_the_same_weights(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "images")
    run = [
        "data=imagefolder",
        f"data.source.root={root}",
        "data.num_classes=3",
        "data.image_size=[16,16]",
        "data.batch_size=8",  # 6 batches per epoch
        "data.num_workers=1",
        "trainer.max_epochs=2",
        "test=false",
        "callbacks=minimal",
        "callbacks.rich_progress_bar=null",
    ]
    config = lambda *extra, output_dir: compose_config(  # noqa: E731
        "train", [*run, *extra], tmp_path, output_dir=output_dir
    )
    train(config(output_dir=tmp_path / "straight"))
    # The loaders' workers are stopped when the run ends, not left to the garbage collector
    # (which found them stuck and killed them after 5 s each).
    assert multiprocessing.active_children() == []
    interrupt = [f"+callbacks.stop._target_={__name__}.InterruptAtStep", "+callbacks.stop.step=8"]
    with pytest.raises(SystemExit):  # in epoch 1, after its second batch
        train(config(*interrupt, output_dir=tmp_path / "resumed"))
    assert multiprocessing.active_children() == []
    stopped = torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=True)
    assert stopped["global_step"] == 8
    train(config("ckpt_path=last", output_dir=tmp_path / "resumed"))
    a = torch.load(tmp_path / "straight/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 12
    for key, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][key], value), key


def test_a_compiled_network_trains_and_saves_the_plain_networks_keys(train_config, tmp_path):
    # The eager backend runs TorchDynamo's graph capture without a C++ toolchain.
    cfg = train_config("debug=fast", "test=false", "compile={backend: eager}", "callbacks=minimal")
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    saved = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    plain = build_model(cfg.model).state_dict()
    assert sorted(saved) == sorted(f"model.{key}" for key in plain)


def test_unknown_compile_options_are_named(train_config) -> None:
    with pytest.raises(ConfigError, match="compile has unknown options \\['speed'\\]"):
        train(train_config("compile={speed: max}"))
