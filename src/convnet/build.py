"""The factories of a run: network, LightningModule, Trainer, precision and compile options.

Everything here turns a composed run config into objects and nothing more: no folder is
chosen, no record written, no checkpoint read (convnet.resume makes the one value that says
what a run continues). convnet.train orchestrates a run from these; eval, visualize, the
sweep pre-flight and the benchmarks build the same objects the same way.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.profilers import PassThroughProfiler
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from convnet.checkpoints import AtomicCheckpointIO
from convnet.config import ConfigError, check_model_fits_data
from convnet.guards import LOSS_FACTOR, CheckpointOnInterrupt, DivergenceGuard
from convnet.hardware import auto_precision, memory_format_for
from convnet.host_memory import keep_freed_memory
from convnet.models import check_network
from convnet.models.pretrained import load_pretrained
from convnet.module import ImageClassifier
from convnet.resume import Resume, last_checkpoint
from convnet.targets import check_targets

log = logging.getLogger(__name__)


DEVICES = ("auto", "cpu", "cuda")


def pick_device(device: str) -> torch.device:
    """Return the device `device` names ("auto": CUDA when there, else the CPU)."""
    if device not in DEVICES:
        raise ConfigError(f"device={device!r} is not allowed: use one of {', '.join(DEVICES)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available: use device=cpu")
    return torch.device(device)


def build_model(model_cfg: DictConfig, pretrained_weights: bool = True) -> nn.Module:
    """Return the network a model config describes, checked to take the data's image size,
    with the weights of `model.pretrained` loaded if it names a file (so a size the network
    cannot take, like a file that does not fit, fails here, before training).

    pretrained_weights: False leaves `model.pretrained` unread, for a network whose
    weights come from a checkpoint next (the file may be long gone by then).
    """
    # A copy: the run config (saved into checkpoints) keeps its `pretrained` key.
    network_cfg = model_cfg.copy()
    with open_dict(network_cfg):
        pretrained = network_cfg.pop("pretrained", None)
    network = check_network(instantiate(network_cfg))
    if pretrained is None or not pretrained_weights:
        return network
    return load_pretrained(network, pretrained)


def build_network(cfg: DictConfig) -> nn.Module:
    """Return the network of a run config, compiled as its `compile` key says."""
    check_model_fits_data(cfg)
    network = build_model(cfg.model)
    options = compile_options(cfg)
    if options is not None:
        # In place, so the state_dict keeps the keys of the plain network (no _orig_mod).
        network.compile(**options)
        log.info("compiling the network with torch.compile(%s)", options or "")
    return network


def compile_options(cfg: DictConfig) -> dict[str, Any] | None:
    """Return torch.compile's options for this run, or None when it does not compile."""
    chosen = cfg.get("compile", False)
    if chosen is True:
        return {}
    if isinstance(chosen, DictConfig):
        options = OmegaConf.to_container(chosen, resolve=True)
        allowed = set(inspect.signature(torch.compile).parameters) - {"model"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                f"compile has unknown options {unknown}: torch.compile takes "
                f"{', '.join(sorted(allowed))}, e.g. compile={{mode: max-autotune}}"
            )
        return options
    return None


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """Return the run config with every interpolation resolved (Hydra's own node left out)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    return resolved


# What the builders here do with a run config's sections beyond Hydra's instantiate, for the
# check of its keys (convnet.targets). Keys build_model reads itself:
READ_BY_BUILDERS = {"model": frozenset({"pretrained"})}
# Arguments given the targets: the optimizer its parameter groups
# (ImageClassifier.build_optimizer), the schedule its optimizer and length
# (configure_optimizers), the Trainer what build_trainer makes.
GIVEN_BY_BUILDERS = {
    "optimizer": frozenset({"params"}),
    "scheduler": frozenset({"optimizer", "total_steps"}),
    "trainer": frozenset({"callbacks", "logger", "plugins"}),
}
# The arguments build_module gives ImageClassifier itself; the run config's `module` section
# may set the others.
MODULE_GIVEN = frozenset(
    {"model", "optimizer", "scheduler", "num_classes", "config", "memory_format"}
)


def check_buildable(cfg: DictConfig) -> None:
    """Raise ConfigError naming every `_target_` of the run config `cfg` that cannot be
    imported and every key its target (or ImageClassifier, for `module`) does not take,
    before anything is built (convnet.targets)."""
    options = {"module": (ImageClassifier, MODULE_GIVEN)}
    check_targets(cfg, READ_BY_BUILDERS, GIVEN_BY_BUILDERS, options)


def build_module(cfg: DictConfig, model: nn.Module) -> ImageClassifier:
    """Return the LightningModule for `model` with the run's optimizer and schedule."""
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    return ImageClassifier(
        model,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        num_classes=cfg.data.num_classes,
        config=resolved_config(cfg),
        memory_format=memory_format_of(cfg),
        **cfg.get("module", {}),
    )


def training_device_type(trainer_cfg: DictConfig) -> str:
    """Return the device type the trainer config trains on here: cuda, cpu (or mps, tpu...)."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    if accelerator in ("auto", "gpu", "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu" if accelerator in ("auto", "cpu") else accelerator


def trains_on_cuda(trainer_cfg: DictConfig) -> bool:
    """Return whether the trainer config trains on a CUDA GPU of this machine."""
    return training_device_type(trainer_cfg) == "cuda"


def precision_for(trainer_cfg: DictConfig) -> str:
    """Return the trainer precision: `auto` means bf16 mixed on CUDA with bf16 and on CPUs
    with bf16 in hardware (AMX, AVX512_BF16), fp32 elsewhere (convnet.hardware)."""
    precision = str(trainer_cfg.get("precision", "auto"))
    if precision != "auto":
        return precision
    return auto_precision(training_device_type(trainer_cfg))


def memory_format_of(cfg: DictConfig) -> torch.memory_format:
    """Return the memory format of the run's network and batches (`memory_format`, where
    `auto` is channels_last on CUDA and on x86 CPUs, convnet.hardware). A checkpoint's
    stored config has no trainer (convnet.stored_config): it runs where a trainer would."""
    device = training_device_type(cfg.get("trainer") or {})
    return memory_format_for(cfg.get("memory_format", "auto"), device)


def prepare_host_memory(cfg: DictConfig) -> bool:
    """On the CPU, keep the memory each step frees for the next (`keep_host_memory`);
    return whether this process keeps it."""
    if cfg.get("keep_host_memory", True) and not trains_on_cuda(cfg.trainer):
        return keep_freed_memory()
    return False


def logger_options(logger_cfg: DictConfig, purge_step: int | None) -> dict[str, Any]:
    """Return the options a logger gets beyond its config: `purge_step` for the TensorBoard
    logger and convnet's CSV logger of a resumed training run, the global step of the
    checkpoint it resumes from.

    A killed run may have logged steps after its last checkpoint, which the resumed run logs
    again; TensorBoard hides the earlier session's events from `purge_step` on, and the CSV
    logger moves their rows out of metrics.csv, so no step shows twice. Lightning logs at the
    number of optimizer steps taken (the global step with one optimizer), and the epoch-end
    metrics of the checkpoint's epoch one step before it.
    """
    target = str(logger_cfg.get("_target_", ""))
    purges = target.endswith("TensorBoardLogger") or target == "convnet.loggers.CSVLogger"
    if purge_step is None or not purges:
        return {}
    return {"purge_step": purge_step}


class NoProfiler(PassThroughProfiler):
    """Lightning's profiler when none is asked for (it records nothing), without the
    generator-based context manager it makes around every hook of every callback: half
    the cost of calling a hook on 20 callbacks (15 against 30 us, 6 hooks a step)."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return self._nothing


# The callback hooks Lightning calls on every batch (training, validation, test, predict).
BATCH_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
)


def skip_unused_batch_hooks(callbacks: Sequence[Callback]) -> None:
    """Keep Lightning from calling the per-batch hooks a callback does not implement.

    Lightning calls each of the 6 hooks of a training step on every callback (19 in a
    default run) whether it does anything or not, and reads each one's `state_key` (for
    ModelCheckpoint a string built from its settings) on the way: 21 us a hook on 2 CPU
    cores, 1.7 us once the no-ops are skipped, so 0.12 ms of a training step. Its dispatch
    (`lightning.pytorch.trainer.call._call_callback_hooks`) passes over an attribute that
    is not callable, so each hook a callback inherits unchanged from `Callback` (a no-op)
    is shadowed on the instance by None. Lightning reaches these hooks only through that
    dispatch; the classes' methods stay as they are, for `super()` calls.
    """
    for callback in callbacks:
        for hook in BATCH_HOOKS:
            if getattr(type(callback), hook, None) is getattr(Callback, hook):
                setattr(callback, hook, None)


def build_trainer(
    cfg: DictConfig, extra_callbacks: Sequence[Callback] = (), resume: Resume | None = None
) -> L.Trainer:
    """Return the Lightning Trainer with the run's callbacks and loggers (and `extra_callbacks`).

    resume: what a training run continues (convnet.resume): its TensorBoard logger purges
    the steps from the checkpoint's on (see logger_options), and its checkpoint, read
    already, is handed to Lightning instead of being read again.
    """
    purge_step = resume.global_step if resume is not None else None
    read = (resume.path, resume.checkpoint) if resume and resume.checkpoint is not None else None
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks += extra_callbacks
    loggers = [
        instantiate(c, **logger_options(c, purge_step))
        for c in (cfg.get("logger") or {}).values()
        if c
    ]
    if not loggers:
        # It has nowhere to write (Lightning would refuse to start).
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    # `trainer.profiler=simple` (or advanced...) profiles; otherwise the cheap no-op.
    profiler = {} if cfg.trainer.get("profiler") else {"profiler": NoProfiler()}
    try:
        trainer = instantiate(
            cfg.trainer,
            **profiler,
            callbacks=[
                *callbacks,
                DivergenceGuard(loss_factor=cfg.get("divergence_loss_factor", LOSS_FACTOR)),
                CheckpointOnInterrupt(last_checkpoint(Path(cfg.paths.output_dir))),
            ],
            logger=loggers or False,
            precision=precision_for(cfg.trainer),
            plugins=[AtomicCheckpointIO(read)],
        )
    except InstantiationException as error:
        refused = error.__cause__
        if not isinstance(refused, MisconfigurationException):
            raise
        # A setting Lightning refuses (devices=0, an accelerator the machine lacks, a
        # precision it does not know): its own words, as one of the run's config mistakes.
        raise ConfigError(
            f"trainer: Lightning refuses these settings: {str(refused).rstrip('.')}. Fix the "
            "trainer.* keys "
            "(`python scripts/train.py --cfg job` prints them)."
        ) from refused
    # After the Trainer is made: it adds callbacks of its own (a progress bar...).
    skip_unused_batch_hooks(trainer.callbacks)
    return trainer
