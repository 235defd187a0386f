"""convnet from Python (a notebook, another program): train from overrides, build a zoo
network by name, load a trained one ready to classify images.

    from convnet.api import create_model, load, train

    result = train(["model=resnet20", "data=digits", "trainer.max_epochs=5"])
    result.metrics["val/acc"], result.run_dir           # the run's folder under outputs/
    model = load(result.last_checkpoint)                # network, class names, eval transform
    model.probabilities([model.transform.read("seven.png")])
    network = create_model("vgg11_bn", num_classes=100)

The overrides are those of `python scripts/train.py` (the same configs, the same run
folders): a notebook's run and a command's run are the same run.
"""

from __future__ import annotations

import datetime
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from convnet import train as training
from convnet.checks import ConfigError
from convnet.compose import compose_config
from convnet.config_keys import compose_or_explain
from convnet.export import load_export
from convnet.inference import EvalTransform, LoadedModel, load_checkpoint_model
from convnet.models.zoo import create_model, model_names
from convnet.resume import resumed_run
from convnet.runs import (
    CHECKPOINTS,
    LAST_CHECKPOINT,
    check_run_folder,
    fresh_run_dir,
    refuse_a_file_in_the_way,
)

__all__ = [
    "EvalTransform",
    "LoadedModel",
    "TrainResult",
    "compose_run",
    "create_model",
    "load",
    "model_names",
    "train",
]


@dataclass(frozen=True)
class TrainResult:
    """What a training run gives back: its final metrics by name and its folder."""

    metrics: dict[str, float]
    run_dir: Path

    @property
    def last_checkpoint(self) -> Path:
        """Return the run's checkpoints/last.ckpt (written each epoch)."""
        return self.run_dir / CHECKPOINTS / LAST_CHECKPOINT


def compose_run(
    overrides: Sequence[str] | str = (), run_dir: str | Path | None = None
) -> DictConfig:
    """Return the train config `python scripts/train.py <overrides>` runs, in run folder
    `run_dir` (made here; default: a fresh one under outputs/train/runs, as the script's).
    `overrides` is a list (`["model=resnet20", "data=digits"]`) or one string split as a
    shell splits the command line (`"model=resnet20 data=digits"`).
    A `run_dir` that holds another run is refused (RunFolderError), as the script refuses
    it, unless the overrides resume that run (ckpt_path=last or one of its checkpoints)."""
    # A string is a sequence of its characters: read as the command line, not as 'm', 'o'...
    overrides = shlex.split(overrides) if isinstance(overrides, str) else list(overrides)
    # A key the config does not have is named (with the one meant) before a folder is made.
    cfg = compose_or_explain("train", overrides)
    if run_dir is None:
        folder = _fresh_run_folder(cfg)
    else:
        folder = Path(run_dir).absolute()
        refuse_a_file_in_the_way(folder, "run_dir")
        ckpt_path = cfg.get("ckpt_path")
        resumed = resumed_run(ckpt_path and str(ckpt_path), folder)
        check_run_folder(folder, "run_dir", ckpt_path, resumed)
    return compose_config("train", overrides, output_dir=folder.absolute())


def train(
    overrides: Sequence[str] | str | DictConfig = (), run_dir: str | Path | None = None
) -> TrainResult:
    """Train (and test) the run the overrides describe (see compose_run), or a config
    compose_run made; return its metrics and its folder."""
    cfg = overrides if isinstance(overrides, DictConfig) else compose_run(overrides, run_dir)
    metrics = training.train(cfg)
    return TrainResult(metrics, Path(cfg.paths.output_dir))


def load(
    path: str | Path, data: DictConfig | dict | None = None, device: str = "auto"
) -> LoadedModel:
    """Return the network of a convnet checkpoint (.ckpt) or a safetensors export's
    model.json, in eval mode on `device` ("auto": CUDA when there, else the CPU), with its
    class names and the eval transform its data config describes.

    data: `data.*` keys merged into a checkpoint's stored data config (e.g. a moved image
    folder's `{"source": {"root": ...}}`, for its class names).
    """
    if str(path).endswith(".json"):
        if data:
            raise ConfigError(
                f"data={data}: {path} is an export, whose data keys are fixed; data overrides "
                "apply to a checkpoint's stored config (give a .ckpt, or no data)"
            )
        return load_export(path, device=device)
    overrides = DictConfig(data) if isinstance(data, dict) else data
    return load_checkpoint_model(path, overrides, device=device)


def _fresh_run_folder(cfg: DictConfig) -> Path:
    """Return a new folder under <paths.log_dir>/train/runs of the train config `cfg`, made
    (claimed) here: named by the second, with _1, _2... for runs started in the same second,
    as scripts/train.py's."""
    runs = Path(cfg.paths.log_dir) / str(cfg.task_name) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    while True:
        folder = fresh_run_dir(runs, now=datetime.datetime.now())
        try:
            folder.mkdir()
        except FileExistsError:  # another run took that name first
            continue
        return folder
