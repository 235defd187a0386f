"""Lightning's per-batch hook dispatch in a convnet run: what is skipped, what still runs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from convnet.build import BATCH_HOOKS, build_module, build_network, build_trainer
from convnet.module import ImageClassifier
from convnet.train import train
from tests.compose import TINY_SHAPES, compose_config

RUN = [*TINY_SHAPES, "debug=fast", "test=false", "callbacks=minimal", "logger=none"]


class Counting(L.Callback):
    """Counts the training-step hooks Lightning calls on it."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.steps = 0

    def on_train_end(self, trainer, pl_module) -> None:
        self.steps = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.calls["on_train_batch_end"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.calls["on_before_optimizer_step"] += 1


class CountingSubclass(Counting):
    """Overrides nothing itself: the hooks it inherits from Counting still run."""


class Silent(L.Callback):
    """Implements no hook."""


def test_a_run_calls_the_hooks_callbacks_implement_and_skips_the_no_ops(tmp_path: Path) -> None:
    counting, inherited, silent = Counting(), CountingSubclass(), Silent()
    cfg = compose_config("train", RUN, tmp_path)
    train(cfg, callbacks=[counting, inherited, silent])
    # Every optimizer step reached both callbacks' hooks.
    assert counting.steps > 0
    expected = {"on_train_batch_end": counting.steps, "on_before_optimizer_step": counting.steps}
    assert counting.calls == expected
    assert inherited.calls == counting.calls
    # The silent callback's hooks are shadowed on the instance, its class is untouched.
    assert all(getattr(silent, hook) is None for hook in BATCH_HOOKS)
    assert all(callable(getattr(Silent, hook)) for hook in BATCH_HOOKS)
    assert callable(counting.on_train_batch_end) and counting.on_after_backward is None


def test_lightning_s_own_callbacks_keep_their_hooks(tmp_path: Path) -> None:
    cfg = compose_config("train", [*TINY_SHAPES, "debug=fast"], tmp_path)
    trainer = build_trainer(cfg)
    checkpoints = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert checkpoints and all(callable(c.on_train_batch_end) for c in checkpoints)
    assert all(c.on_before_backward is None for c in checkpoints)


def test_the_module_s_hook_name_is_set_without_nn_module_s_checks(tmp_path: Path) -> None:
    cfg = compose_config("train", [*TINY_SHAPES], tmp_path)
    module = build_module(cfg, build_network(cfg))
    assert isinstance(module, ImageClassifier)
    module._current_fx_name = "training_step"
    assert module._current_fx_name == "training_step"
    assert "_current_fx_name" in module.__dict__
    module._current_fx_name = None
    assert module._current_fx_name is None
    # Anything else still goes through nn.Module: a submodule is registered as one.
    module.extra = L.LightningModule()
    assert "extra" in dict(module.named_children())
