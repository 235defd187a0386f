"""Training: compose everything a run config describes, fit, test, return the metrics."""

from __future__ import annotations

import inspect
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from convnet.checkpoints import AtomicCheckpointIO, check_compatible, read_checkpoint
from convnet.config import ConfigError, validate
from convnet.data import ImageDataModule
from convnet.guards import LOSS_FACTOR, CheckpointOnInterrupt, DivergenceGuard
from convnet.host_memory import keep_freed_memory
from convnet.models import check_network
from convnet.models.pretrained import load_pretrained
from convnet.module import CONFIG_KEY, ImageClassifier
from convnet.run_records import start_records
from convnet.runs import CHECKPOINTS, LAST, LAST_CHECKPOINT, newest_resumable_run

log = logging.getLogger(__name__)


def build_model(model_cfg: DictConfig, pretrained_weights: bool = True) -> nn.Module:
    """Return the network a model config describes, with the weights of `model.pretrained`
    loaded if it names a file (models check the image size as they are built, so a size
    the network cannot take, like a file that does not fit, fails here, before training).

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
    network = build_model(cfg.model)
    options = compile_options(cfg)
    if options is not None:
        # In place, so the state_dict keeps the keys of the plain network (no _orig_mod).
        network.compile(**options)
        log.info("compiling the network with torch.compile(%s)", options or "")
    return network


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """Return the run config with every interpolation resolved (Hydra's own node left out)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    return resolved


@rank_zero_only
def save_resolved_config(cfg: DictConfig) -> Path:
    """Write the resolved run config to <run>/config.yaml (.hydra/ keeps the unresolved one)."""
    path = Path(cfg.paths.output_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(resolved_config(cfg))))
    return path


def build_module(cfg: DictConfig, model: nn.Module) -> ImageClassifier:
    """Return the LightningModule for `model` with the run's optimizer and schedule."""
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    return ImageClassifier(
        model,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        num_classes=cfg.data.num_classes,
        config=resolved_config(cfg),
        **cfg.get("module", {}),
    )


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


def trains_on_cuda(trainer_cfg: DictConfig) -> bool:
    """Return whether the trainer config trains on a CUDA GPU of this machine."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def precision_for(trainer_cfg: DictConfig) -> str:
    """Return the trainer precision: `auto` means bf16 mixed on CUDA, fp32 elsewhere."""
    precision = str(trainer_cfg.get("precision", "auto"))
    if precision != "auto":
        return precision
    on_cuda = trains_on_cuda(trainer_cfg)
    return "bf16-mixed" if on_cuda and torch.cuda.is_bf16_supported() else "32-true"


def prepare_host_memory(cfg: DictConfig) -> bool:
    """On the CPU, keep the memory each step frees for the next (`keep_host_memory`);
    return whether this process keeps it."""
    if cfg.get("keep_host_memory", True) and not trains_on_cuda(cfg.trainer):
        return keep_freed_memory()
    return False


def build_trainer(
    cfg: DictConfig,
    extra_callbacks: Sequence[Callback] = (),
    checkpoint: dict[str, Any] | None = None,
) -> L.Trainer:
    """Return the Lightning Trainer with the run's callbacks and loggers (and `extra_callbacks`).

    checkpoint: the contents of the checkpoint the run resumes from, if already read.
    """
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks += extra_callbacks
    loggers = [
        instantiate(c, **logger_options(c, cfg, checkpoint))
        for c in (cfg.get("logger") or {}).values()
        if c
    ]
    if not loggers:
        # It has nowhere to write (Lightning would refuse to start).
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    return instantiate(
        cfg.trainer,
        callbacks=[
            *callbacks,
            DivergenceGuard(loss_factor=cfg.get("divergence_loss_factor", LOSS_FACTOR)),
            CheckpointOnInterrupt(last_checkpoint(cfg)),
        ],
        logger=loggers or False,
        precision=precision_for(cfg.trainer),
        plugins=[AtomicCheckpointIO()],
    )


def logger_options(
    logger_cfg: DictConfig, cfg: DictConfig, checkpoint: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return the options a logger gets beyond its config: `purge_step` for the TensorBoard
    logger of a resumed training run, the global step of the checkpoint it resumes from.

    A killed run may have logged steps after its last checkpoint, which the resumed run logs
    again; TensorBoard hides the earlier session's events from `purge_step` on, so no step
    shows twice. Lightning logs at the number of optimizer steps taken (the global step with
    one optimizer), and the epoch-end metrics of the checkpoint's epoch one step before it.
    `checkpoint`: the resumed checkpoint's contents when the caller has read them already.
    """
    target = str(logger_cfg.get("_target_", ""))
    if not target.endswith("TensorBoardLogger") or not cfg.get("train"):
        return {}
    if checkpoint is None:
        ckpt_path = resume_path(cfg)
        checkpoint = {} if ckpt_path is None else read_checkpoint(ckpt_path)
    step = checkpoint.get("global_step")
    return {} if step is None else {"purge_step": int(step)}


def last_checkpoint(cfg: DictConfig) -> Path:
    """Return where this run's last.ckpt lives."""
    return Path(cfg.paths.output_dir) / CHECKPOINTS / LAST_CHECKPOINT


def resume_path(cfg: DictConfig) -> str | None:
    """Return the checkpoint file to resume from, or None for a fresh run."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path:
        return None
    if ckpt_path == LAST:
        path = last_checkpoint(cfg)
        if not path.is_file():
            # Names the runs folder and the fix.
            newest_resumable_run(Path(cfg.paths.output_dir).parent)
        return str(path)
    if not Path(ckpt_path).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path}: no such checkpoint file. Give the path of a .ckpt file, "
            "`last` to resume the newest run, or leave ckpt_path unset."
        )
    return str(ckpt_path)


def check_unfinished(ckpt_path: str, checkpoint: dict[str, Any], cfg: DictConfig) -> None:
    """Raise ConfigError if the checkpoint (read from ckpt_path) has already trained all its
    epochs: the fit would do nothing and the run folder would be written for no reason."""
    loops = checkpoint.get("loops") or {}
    progress = loops.get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    # `processed` counts the epochs whose batches all ran; `completed` lags one behind
    # in the checkpoint written at the end of an epoch.
    done, max_epochs = int(progress.get("processed", 0)), int(cfg.trainer.max_epochs)
    if done >= max_epochs:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: {ckpt_path} has trained all of its {done} epochs "
            f"(trainer.max_epochs={max_epochs}). To train longer, raise trainer.max_epochs; "
            f"to score it, run scripts/eval.py ckpt_path={ckpt_path}"
        )


# What a resumed run takes from its checkpoint whatever the config says.
RESTORED = "optimizer"
# What it builds anew from the config, from the checkpoint's step on.
REBUILT = "scheduler"
_UNSET = "unset"


def _differences(now: Any, then: Any, key: str) -> list[tuple[str, Any, Any]]:
    """Return (key, value now, value in the checkpoint's run) for each differing leaf."""
    if isinstance(now, dict) and isinstance(then, dict):
        keys = sorted(now.keys() | then.keys())
        return [
            difference
            for name in keys
            for difference in _differences(
                now.get(name, _UNSET), then.get(name, _UNSET), f"{key}.{name}"
            )
        ]
    return [] if now == then else [(key, now, then)]


def check_resume_settings(ckpt_path: str, checkpoint: dict[str, Any], cfg: DictConfig) -> None:
    """Say which optimizer and scheduler values of `cfg` differ from those of the run that
    wrote the checkpoint: a resumed run restores the checkpoint's optimizer state (its
    learning rate, momentum, weight decay...), so optimizer values are ignored, with a
    warning, and another optimizer is a ConfigError (its state would not load); scheduler
    values shape the schedule from the checkpoint's step on, which the warning says."""
    stored = checkpoint.get(CONFIG_KEY)
    if not isinstance(stored, dict):
        return  # a checkpoint without its run's config: nothing to compare
    now = resolved_config(cfg)
    ignored = _differences(now.get(RESTORED), stored.get(RESTORED), RESTORED)
    reshaping = _differences(now.get(REBUILT), stored.get(REBUILT), REBUILT)
    target = f"{RESTORED}._target_"
    for key, value, was in ignored:
        if key == target:
            raise ConfigError(
                f"{key}={value}: {ckpt_path} was trained with {was}, whose state a resumed "
                "run restores and this optimizer cannot take. Resume with the checkpoint's "
                f"optimizer (see its run's config.yaml), or start a fresh run from its weights: "
                f"model.pretrained={ckpt_path} without ckpt_path."
            )
    said = []
    if ignored:
        verb = "is" if len(ignored) == 1 else "are"
        said.append(
            f"{_listed(ignored)} {verb} ignored: a resumed run restores the checkpoint's "
            "optimizer state, with its values"
        )
    if reshaping:
        step = checkpoint.get("global_step", "?")
        said.append(
            f"from step {step} on, the schedule follows {_listed(reshaping)}, its peak still "
            "the checkpoint's learning rate"
        )
    if said:
        log.warning(
            "resuming %s: %s. To train with them from the start of a schedule, start a "
            "fresh run from its weights: model.pretrained=%s and no ckpt_path.",
            ckpt_path,
            "; ".join(said),
            ckpt_path,
        )


def _listed(differences: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{key}={value} (the checkpoint's: {was})" for key, value, was in differences)


def resume_checkpoint(cfg: DictConfig) -> tuple[str | None, dict[str, Any] | None]:
    """Return the checkpoint file to resume from and, when training, its contents (read
    once, memory-mapped) checked to have epochs left and an optimizer the run can restore
    (see check_resume_settings); (None, None) for a fresh run."""
    ckpt_path = resume_path(cfg)
    if not ckpt_path or not cfg.get("train", True):
        return ckpt_path, None
    checkpoint = read_checkpoint(ckpt_path)
    check_unfinished(ckpt_path, checkpoint, cfg)
    check_resume_settings(ckpt_path, checkpoint, cfg)
    return ckpt_path, checkpoint


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (torch.Tensor, float, int))}


def train(
    cfg: DictConfig,
    callbacks: Sequence[Callback] = (),
    resume: tuple[str | None, dict[str, Any] | None] | None = None,
) -> dict[str, float]:
    """Train (and test) the run `cfg` describes; return the final metrics by name.

    The run's records (config.yaml; under Hydra its .hydra/ files, and result.json through
    the recorder) are first written once the config, the checkpoint it resumes, the data
    and the network have passed their checks (see convnet.run_records).

    `callbacks` are added to those of `cfg.callbacks` (scripts/train.py passes the recorder
    of <run>/result.json that sweep summaries read). `resume`: what resume_checkpoint(cfg)
    returned, when the caller has called it already (the checkpoint is then read once).
    """
    validate(cfg)
    ckpt_path, checkpoint = resume if resume is not None else resume_checkpoint(cfg)
    prepare_host_memory(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule: ImageDataModule = instantiate(cfg.data)
    if cfg.get("train", True):
        # The data is loaded now, so a data set that is missing or does not fit the config
        # fails before the run writes anything (Lightning's fit finds it loaded).
        datamodule.prepare_data()
        datamodule.setup("fit")
    module = build_module(cfg, build_network(cfg))
    if checkpoint is not None:
        check_compatible(checkpoint["state_dict"], module, ckpt_path)
    trainer = build_trainer(cfg, callbacks, checkpoint)
    # Every check has passed: the run's records are written from here on. A command that
    # failed before left its folder, and the run it meant to continue, as they were.
    start_records()
    save_resolved_config(cfg)

    if cfg.get("train", True):
        if ckpt_path:
            log.info("resuming from %s", ckpt_path)
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SIGTERMException as stopped:
            # Lightning exits with status 0 on SIGTERM; a run that did not finish must not
            # look finished to schedulers and sweeps. 143 = 128 + SIGTERM, the usual status.
            raise SystemExit(128 + signal.SIGTERM) from stopped
    metrics = _floats(trainer.callback_metrics)

    if cfg.get("test", False):
        datamodule.setup("test")
        if datamodule.has_test_split():
            checkpoint = trainer.checkpoint_callback
            best = checkpoint.best_model_path if checkpoint is not None else ""
            if not best:
                log.warning("no best checkpoint: testing the current weights")
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
            metrics |= _floats(trainer.callback_metrics)
        else:
            log.info("this data source has no test split: skipping the test")
    return metrics


def metric_value(metrics: dict[str, float], name: str | None) -> float | None:
    """Return the metric `name` for a sweeper, with an error listing what exists."""
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(
            f"optimized_metric={name} was not logged; logged metrics: {', '.join(sorted(metrics))}"
        )
    return metrics[name]
