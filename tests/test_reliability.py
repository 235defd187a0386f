"""Checkpoints survive failures; diverged runs and mismatched checkpoints stop with a reason."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.fabric.utilities.data import AttributeDict

from convnet.checkpoints import (
    AtomicCheckpointIO,
    CheckpointError,
    check_compatible,
    read_checkpoint,
)
from convnet.config import ConfigError
from convnet.guards import DivergenceError, DivergenceGuard
from convnet.models import VGG
from convnet.train import logger_options, train
from tests.compose import train_script

QUIET = ["callbacks=minimal", "callbacks.rich_progress_bar=null"]


def test_a_failure_while_saving_leaves_the_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io, target = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)

    def save_half_then_fail(obj, file) -> None:
        file.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(target)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no partial file left


def test_a_truncated_checkpoint_is_named_as_truncated(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(path)


def test_a_checkpoint_of_another_model_names_the_differing_weights() -> None:
    small = VGG([8, "M"], in_channels=3, num_classes=10, image_size=8, batch_norm=True)
    other = VGG([8, "M"], in_channels=3, num_classes=5, image_size=8, batch_norm=True)
    with pytest.raises(CheckpointError, match=r"classifier\.\d+\.weight: checkpoint \(5, 8\)"):
        check_compatible(other.state_dict(), small, "other.ckpt")
    deeper = VGG([8, "M", 16, "M"], in_channels=3, num_classes=10, image_size=8)
    with pytest.raises(
        CheckpointError, match=r"unexpected: features\.3\.bias, features\.3\.weight"
    ):
        check_compatible(deeper.state_dict(), small, "deeper.ckpt")
    check_compatible(small.state_dict(), small, "same.ckpt")


def test_resuming_with_a_checkpoint_of_another_model_fails_before_training(
    train_config, tmp_path: Path
) -> None:
    train(train_config("debug=fast", "test=false", *QUIET, output_dir=tmp_path / "small"))
    checkpoint = tmp_path / "small" / "checkpoints" / "last.ckpt"
    cfg = train_config(
        "model=resnet20", f"ckpt_path={checkpoint}", *QUIET, output_dir=tmp_path / "other"
    )
    with pytest.raises(CheckpointError, match="another model"):
        train(cfg)


def test_a_diverging_run_stops_naming_step_and_lr_and_keeps_the_good_checkpoint(
    train_config, tmp_path: Path
) -> None:
    cfg = train_config("debug=fast", "test=false", *QUIET)
    train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    good = last.read_bytes()
    diverging = train_config(
        "debug=fast",
        "test=false",
        "optimizer.lr=1e6",
        "trainer.limit_train_batches=60",
        "scheduler=constant",
        *QUIET,
    )
    with pytest.raises(DivergenceError, match=r"at step \d+ \(epoch 0\) with learning rate 1e\+06"):
        train(diverging)
    assert last.read_bytes() == good


def _guarded(losses: list[float], num_classes: int = 10, **options) -> None:
    """Feed a DivergenceGuard the losses of consecutive steps, as Lightning's loop does."""
    guard = DivergenceGuard(check_every_n_steps=1, **options)
    optimizer = SimpleNamespace(param_groups=[{"lr": 0.1}])
    trainer = SimpleNamespace(global_step=0, current_epoch=0, optimizers=[optimizer])
    module = SimpleNamespace(hparams=AttributeDict(num_classes=num_classes), device="cpu")
    guard.on_fit_start(trainer, module)
    for index, loss in enumerate(losses):
        guard.on_train_batch_start(trainer, module, None, index)
        trainer.global_step += 1  # the optimizer has stepped by the batch's end
        guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(loss)}, None, index)


def test_a_finite_loss_far_above_a_guess_is_divergence() -> None:
    # 20 x ln(10) = 46.05: a loss just under it is (barely) a run that may still learn.
    _guarded([2.3, 2.0, 46.0, 3.0])
    with pytest.raises(DivergenceError, match=r"blew up to 47 .* at step 2 \(epoch 0\)"):
        _guarded([2.3, 2.0, 47.0, 3.0])
    # The bound follows the number of classes: 20 x ln(2) = 13.9.
    with pytest.raises(DivergenceError, match="blew up to 14"):
        _guarded([0.7, 14.0], num_classes=2)
    _guarded([0.7, 14.0], num_classes=100)  # ln(100) x 20 = 92


def test_without_a_loss_bound_only_nan_and_infinity_are_divergence() -> None:
    _guarded([2.3, 1e4, 2.0], loss_factor=None)
    with pytest.raises(DivergenceError, match=r"NaN or infinite at step 1 "):
        _guarded([2.3, math.nan, 2.0], loss_factor=None)
    with pytest.raises(DivergenceError, match=r"NaN or infinite at step 0 "):
        _guarded([math.inf], loss_factor=None)


def test_asking_for_a_gpu_without_one_is_a_config_error(train_config) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=r"trainer\.accelerator=gpu but no CUDA GPU"):
        train(train_config("trainer=gpu"))


def test_a_resumed_run_purges_the_tensorboard_steps_from_its_checkpoint_on(
    train_config, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 128}, checkpoint)
    resumed = train_config("ckpt_path=last")
    assert logger_options(resumed.logger.tensorboard, resumed) == {"purge_step": 128}
    fresh = train_config()
    assert logger_options(fresh.logger.tensorboard, fresh) == {}
    # Testing a checkpoint must not hide the steps its run logged after it.
    tested = train_config("ckpt_path=last", "train=false")
    assert logger_options(tested.logger.tensorboard, tested) == {}


@pytest.mark.slow
def test_a_config_mistake_is_one_message_without_a_traceback(tmp_path: Path) -> None:
    result = train_script(tmp_path, "optimizer.lr=-1", timeout=120)
    assert result.returncode == 1
    assert "ConfigError: invalid config:\n  optimizer.lr=-1 is not allowed" in result.stderr
    assert "Traceback" not in result.stderr
