"""Checkpoints survive failures; diverged runs and mismatched checkpoints stop with a reason."""

import hashlib
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.fabric.utilities.data import AttributeDict
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from convnet.build import logger_options
from convnet.checkpoints import (
    AtomicCheckpointIO,
    CheckpointError,
    check_compatible,
    read_checkpoint,
)
from convnet.config import ConfigError
from convnet.guards import (
    CheckpointOnInterrupt,
    DivergenceError,
    DivergenceGuard,
    first_non_finite,
)
from convnet.models import VGG
from convnet.resume import Resume
from convnet.train import train
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
    # Named by the kind of network each is, before the checkpoint's weights are compared.
    with pytest.raises(
        ConfigError,
        match=r"^model\._target_=convnet\.models\.ResNet "
        r"\(the checkpoint's: convnet\.models\.VGG\): ",
    ):
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
    guard = DivergenceGuard(**{"check_every_n_steps": 1, **options})
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


def test_losses_checked_every_n_steps_report_the_first_diverged_step_and_its_rate() -> None:
    _guarded([2.3, 2.0, 47.0, math.nan], check_every_n_steps=5)  # not checked yet
    with pytest.raises(DivergenceError, match=r"blew up to 47 .* at step 2 .* learning rate 0.1"):
        _guarded([2.3, 2.0, 47.0, math.nan, 3.0], check_every_n_steps=5)
    with pytest.raises(DivergenceError, match=r"NaN or infinite at step 6 "):
        _guarded([2.3] * 5 + [2.0, math.inf, 50.0], check_every_n_steps=4)


def test_without_a_loss_bound_only_nan_and_infinity_are_divergence() -> None:
    _guarded([2.3, 1e4, 2.0], loss_factor=None)
    with pytest.raises(DivergenceError, match=r"NaN or infinite at step 1 "):
        _guarded([2.3, math.nan, 2.0], loss_factor=None)
    with pytest.raises(DivergenceError, match=r"NaN or infinite at step 0 "):
        _guarded([math.inf], loss_factor=None)


def test_the_first_non_finite_tensor_is_named() -> None:
    tensors = [
        ("a.weight", torch.ones(3)),
        ("a.num_batches_tracked", torch.tensor(7)),  # integers cannot be NaN: skipped
        ("b.running_var", torch.tensor([1.0, math.inf])),
        ("c.weight", torch.tensor([math.nan], dtype=torch.float64)),
    ]
    assert first_non_finite(tensors) == "b.running_var"
    assert first_non_finite(tensors[3:]) == "c.weight"
    assert first_non_finite([("big", torch.full((2,), 3e38)), ("empty", torch.ones(0))]) is None


class _Poisoned(L.LightningModule):
    """A conv + batch norm classifier whose running_var becomes infinite at every step if
    `poisoned`, while its loss stays finite (training batch norm uses the batch's statistics)."""

    def __init__(self, poisoned: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Flatten())
        self.poisoned = poisoned

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        if self.poisoned:
            self.net[1].running_var.fill_(math.inf)
        images, labels = batch
        return nn.functional.cross_entropy(self.net(images), labels)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module: L.LightningModule, folder: Path, **checkpoint_options) -> None:
    data = TensorDataset(torch.randn(8, 1, 1, 1), torch.tensor([0, 1] * 4))
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[
            DivergenceGuard(loss_factor=None),
            ModelCheckpoint(
                folder, filename="last", enable_version_counter=False, **checkpoint_options
            ),
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, DataLoader(data, batch_size=2), DataLoader(data, batch_size=8))


@pytest.mark.parametrize("every", [{}, {"every_n_train_steps": 1}], ids=["epoch", "step"])
def test_an_infinite_buffer_stops_the_run_before_it_overwrites_the_checkpoint(
    tmp_path: Path, every: dict[str, int]
) -> None:
    _fit(_Poisoned(poisoned=False), tmp_path, **every)
    last = tmp_path / "last.ckpt"
    good = hashlib.sha256(last.read_bytes()).hexdigest()
    with pytest.raises(
        DivergenceError,
        match=r"net\.1\.running_var holds NaN or infinite values by step \d \(epoch 0\) with "
        r"learning rate 0\.1\b",
    ):
        _fit(_Poisoned(poisoned=True), tmp_path, **every)
    assert hashlib.sha256(last.read_bytes()).hexdigest() == good


@pytest.mark.slow
def test_without_a_loss_bound_infinite_weights_stop_the_run_and_keep_the_checkpoint(
    train_config, tmp_path: Path
) -> None:
    train(train_config("debug=fast", "test=false", *QUIET))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    good = hashlib.sha256(last.read_bytes()).hexdigest()
    # A rate this high takes batch norm's running_var to infinity while the loss, computed
    # from batch statistics, stays finite: the loss check alone would save the run.
    diverging = train_config(
        "debug=fast",
        "test=false",
        "optimizer.lr=1e6",
        "divergence_loss_factor=null",
        "scheduler=constant",
        *QUIET,
    )
    with pytest.raises(
        DivergenceError,
        match=r"model\.\S+ holds NaN or infinite values by step \d+ \(epoch 0\) with "
        r"learning rate 1e\+06",
    ):
        train(diverging)
    assert hashlib.sha256(last.read_bytes()).hexdigest() == good


def test_asking_for_a_gpu_without_one_is_a_config_error(train_config) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=r"trainer\.accelerator=gpu but no CUDA GPU"):
        train(train_config("trainer=gpu"))


def test_a_trainer_setting_lightning_refuses_is_a_config_error_in_its_words(
    train_config, tmp_path: Path
) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^trainer: Lightning refuses these settings: `Trainer\(devices=0\)` value is not "
        r"a valid input using cpu accelerator\. Fix the trainer\.\* keys",
    ):
        train(train_config("trainer.accelerator=cpu", "trainer.devices=0"))
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training


def purged(cfg) -> int | None:
    """The step a run's TensorBoard logger purges from, as the run computes it."""
    return Resume.from_config(cfg).global_step


def test_a_resumed_run_purges_the_tensorboard_steps_from_its_checkpoint_on(
    train_config, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 128}, checkpoint)
    resumed = train_config("ckpt_path=last")
    assert logger_options(resumed.logger.tensorboard, purged(resumed)) == {"purge_step": 128}
    fresh = train_config()
    assert logger_options(fresh.logger.tensorboard, purged(fresh)) == {}
    # Testing a checkpoint must not hide the steps its run logged after it.
    tested = train_config("ckpt_path=last", "train=false")
    assert logger_options(tested.logger.tensorboard, purged(tested)) == {}


@pytest.mark.slow
def test_a_config_mistake_is_one_message_without_a_traceback(tmp_path: Path) -> None:
    result = train_script(tmp_path, "optimizer.lr=-1", timeout=120)
    assert result.returncode == 1
    assert "ConfigError: invalid config:\n  optimizer.lr=-1 is not allowed" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_runs_folder_given_as_a_checkpoint_is_answered_with_its_checkpoints(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file, and holds no"):
        read_checkpoint(run)
    for name in ("last.ckpt", "epoch002-acc0.9100.ckpt"):
        torch.save({"state_dict": {}}, run / "checkpoints" / name)
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(run)
    assert str(refused.value) == (
        f"checkpoint {run} is a folder, not a checkpoint file: give one of its checkpoints: "
        f"{run}/checkpoints/epoch002-acc0.9100.ckpt, {run}/checkpoints/last.ckpt"
    )


class _Counting(_Poisoned):
    """Counts its training batches."""

    def __init__(self) -> None:
        super().__init__(poisoned=False)
        self.batches = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        self.batches += 1
        return super().training_step(batch, batch_idx)


class _CtrlCAtEpochStart(L.Callback):
    """Ctrl+C in the hooks that begin the second epoch, before its first batch."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


def test_a_run_stopped_as_an_epoch_begins_resumes_to_train_that_epoch(tmp_path: Path) -> None:
    data = TensorDataset(torch.randn(8, 1, 1, 1), torch.tensor([0, 1] * 4))
    last = tmp_path / "last.ckpt"

    def fit(module: _Counting, *callbacks: L.Callback, ckpt_path: Path | None = None) -> int:
        trainer = L.Trainer(
            max_epochs=2,
            num_sanity_val_steps=0,
            callbacks=[CheckpointOnInterrupt(last), *callbacks],
            enable_checkpointing=False,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        loaders = DataLoader(data, batch_size=2), DataLoader(data, batch_size=8)
        trainer.fit(module, *loaders, ckpt_path=ckpt_path, weights_only=True)
        return trainer.global_step

    stopped = _Counting()
    with pytest.raises(SystemExit):  # how Lightning ends a fit stopped by Ctrl+C
        fit(stopped, _CtrlCAtEpochStart())
    assert stopped.batches == 4
    resumed = _Counting()
    # The second epoch, all of it (Lightning skipped it, counting the first's batches).
    assert fit(resumed, ckpt_path=last) == 8
    assert resumed.batches == 4
