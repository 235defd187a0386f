"""A checkpoint's network as ONNX (dynamic batch) or as safetensors weights with a JSON of
its config and class names, each checked against the PyTorch network before it is kept.

    python scripts/export.py ckpt_path=<run>/checkpoints/last.ckpt format=onnx
    python scripts/export.py ckpt_path=<run>/checkpoints/last.ckpt format=safetensors

ONNX holds the network alone (no test-time flip): ONNX Runtime's logits are compared with
PyTorch's on random inputs and on images of the data's val split, at another batch size than
the one exported (so the dynamic batch is checked too). A safetensors export is rebuilt from
its files as a user would (`create_model("model.json")`) and must give identical logits.

The JSON is data, as a checkpoint's stored config is: it is read as plain JSON, its sections
pass convnet.stored_config's checks, and the weights are tensors only.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.table import Table
from torch import Tensor

from convnet.build import build_model
from convnet.checkpoints import CheckpointError, check_compatible
from convnet.checks import (
    ConfigError,
    choose,
    keep_existing,
    non_negative_int,
    output_folder,
    positive_int,
    positive_number,
)
from convnet.console import show
from convnet.inference import LoadedModel, check_classes, load_checkpoint_model, ready
from convnet.stored_config import trusted_run_config

log = logging.getLogger(__name__)

# The files each format writes into output_dir.
FORMATS = {"onnx": ("model.onnx",), "safetensors": ("model.safetensors", "model.json")}
# The JSON of a safetensors export: its "format" and the newest "version" this code reads.
EXPORT_FORMAT = "convnet-safetensors"
EXPORT_VERSION = 1
RECORD_KEYS = ("weights", "classes", "model", "data")
# What of the data config predicting needs: the network's input and the eval transform.
DATA_KEYS = ("in_channels", "num_classes", "image_size", "mean", "std")
INPUT_NAME, OUTPUT_NAME = "images", "logits"
# The batch the ONNX graph is traced with, and the random batch it is checked on (another,
# so a graph whose batch was fixed at export fails the check).
TRACE_BATCH, RANDOM_BATCH = 2, 3
# The exporter's optimiser logs each of its passes at INFO: dozens of lines per export.
EXPORTER_LOGGERS = ("onnx_ir", "onnxscript")


class ExportError(ValueError):
    """An exported file whose network does not give the PyTorch network's logits."""


class ExportFileError(CheckpointError):
    """An export (model.json and its weights) that cannot be used; nothing was built."""


@dataclass
class ExportResult:
    """The files written and, per check input, the largest |logit difference| found."""

    files: list[Path]
    max_abs_diff: dict[str, float] = field(default_factory=dict)


def export(cfg: DictConfig) -> ExportResult:
    """Write `cfg.ckpt_path`'s network as `cfg.format` into `cfg.output_dir`, checked."""
    files = choose(FORMATS, "format", cfg.format)
    folder = output_folder(cfg.output_dir, "output_dir")
    # Before the checkpoint is read: an earlier export there is the user's.
    keep_existing(
        [folder / name for name in files], "output_dir", folder, cfg.get("overwrite", False)
    )
    opset = cfg.get("opset")
    if cfg.format == "onnx":
        check_opset(opset)
    loaded = load_checkpoint_model(cfg.ckpt_path, cfg.get("data"), device="cpu")
    inputs = check_inputs(loaded, non_negative_int(cfg.check_images, "check_images"))
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.format == "onnx":
        tolerance = positive_number(cfg.tolerance, "tolerance")
        result = export_onnx(loaded, folder, inputs, tolerance, opset)
    else:
        result = export_safetensors(loaded, folder, inputs)
    table = Table(title=f"{cfg.format} export: logits against the checkpoint's network")
    for column in ("inputs", "images", "max abs diff of logits"):
        table.add_column(column, justify="left" if column == "inputs" else "right")
    for name, diff in result.max_abs_diff.items():
        table.add_row(name, str(len(inputs[name])), f"{diff:.2e}")
    show(table)
    log.info("written: %s", ", ".join(str(path) for path in result.files))
    return result


def check_inputs(loaded: LoadedModel, val_images: int) -> dict[str, Tensor]:
    """Return the batches an export is checked on: seeded random ones and up to `val_images`
    images of the data's val split, normalised as eval normalises them."""
    transform = loaded.transform
    shape = (RANDOM_BATCH, transform.in_channels, *transform.image_size)
    inputs = {"random": torch.randn(shape, generator=torch.Generator().manual_seed(0))}
    if val_images == 0:
        return inputs
    try:
        datamodule = instantiate(loaded.config.data)
        datamodule.setup("validate")
        images, _ = next(iter(datamodule.val_dataloader()))
    except (OSError, ValueError, InstantiationException) as error:
        log.warning(
            "the data's val images cannot be loaded here (%s): checking on random "
            "inputs only; give the data's location as a +data.* override (+data.source.root=DIR)",
            error,
        )
        return inputs
    inputs["val"] = datamodule.transform(images[:val_images].cpu(), training=False)
    return inputs


def check_opset(opset: Any) -> tuple[Any, int]:
    """Return the onnx module and the newest opset it knows, once `opset` (None: torch.onnx's
    default) is known to be one of them (ConfigError else)."""
    onnx = optional_module("onnx", "ONNX export (torch.onnx's exporter)")
    optional_module("onnxscript", "ONNX export (torch.onnx's exporter)")
    newest = onnx.defs.onnx_opset_version()
    if opset is not None and positive_int(opset, "opset") > newest:
        raise ConfigError(
            f"opset={opset} is not an ONNX opset: onnx {onnx.__version__} knows opsets up to "
            f"{newest}; give one of 18..{newest} (torch.onnx writes those directly) or "
            "opset=null for torch.onnx's default"
        )
    return onnx, newest


def export_onnx(
    loaded: LoadedModel,
    folder: Path,
    inputs: dict[str, Tensor],
    tolerance: float = 1e-4,
    opset: int | None = None,
) -> ExportResult:
    """Write `loaded`'s network as <folder>/model.onnx (input `images`, output `logits`,
    any batch size); return it with ONNX Runtime's largest |logit difference| from
    PyTorch's on each of `inputs`. Raises ExportError above `tolerance`."""
    onnxruntime = optional_module("onnxruntime", "checking an ONNX export")
    onnx, newest = check_opset(opset)
    path = folder / FORMATS["onnx"][0]
    # Written beside it first: an export not at the opset asked for replaces nothing there.
    partial = path.with_name(f".{path.name}.partial")
    network = loaded.network
    example = torch.zeros(TRACE_BATCH, *inputs["random"].shape[1:])
    try:
        # torch.export's exporter (dynamo): the batch dimension is symbolic in the graph.
        with _quiet(*EXPORTER_LOGGERS):
            torch.onnx.export(
                network,
                (example,),
                partial,
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                opset_version=opset,
                external_data=False,  # one file: every zoo network is far below protobuf's 2 GB
                verbose=False,
            )
        written = next(o.version for o in onnx.load(str(partial)).opset_import if o.domain == "")
        if opset is not None and written != opset:
            raise ExportError(
                f"opset={opset}: torch.onnx wrote this network at opset {written}, not "
                f"{opset}. Its exporter writes opsets 18 and later and converts down from "
                "there, which failed for this network, so nothing was written. Give opset=18 "
                f"or later (up to {newest}), or opset=null for torch.onnx's default."
            )
        partial.replace(path)
    finally:  # an exporter's failure, or the wrong opset: no partial file is left
        partial.unlink(missing_ok=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = {}
    for name, batch in inputs.items():
        with torch.inference_mode():
            expected = network(batch).numpy()
        (found,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})
        diffs[name] = float(abs(found - expected).max())
        log.info(
            "ONNX Runtime vs PyTorch, %d %s images: max abs diff %.2e",
            len(batch),
            name,
            diffs[name],
        )
    worst = max(diffs, key=diffs.__getitem__)
    if diffs[worst] > tolerance:
        raise ExportError(
            f"{path}: ONNX Runtime's logits differ from the PyTorch network's by up to "
            f"{diffs[worst]:.2e} on the {worst} inputs, above tolerance={tolerance:g}. The file "
            "is kept for inspection; raise tolerance if that difference is acceptable."
        )
    return ExportResult([path], diffs)


def export_safetensors(
    loaded: LoadedModel, folder: Path, inputs: dict[str, Tensor]
) -> ExportResult:
    """Write `loaded`'s weights as <folder>/model.safetensors and its config and class names
    as model.json; return them, checked to rebuild a network with identical logits on each
    of `inputs` (ExportError else)."""
    safetensors_torch = optional_module("safetensors.torch", "a safetensors export")
    weights, record_path = (folder / name for name in FORMATS["safetensors"])
    state = {key: value.detach().contiguous() for key, value in loaded.network.state_dict().items()}
    safetensors_torch.save_file(state, str(weights), metadata={"format": EXPORT_FORMAT})
    record_path.write_text(json.dumps(export_record(loaded, weights.name), indent=2) + "\n")
    rebuilt = load_export(record_path)
    diffs = {}
    for name, batch in inputs.items():
        original, again = loaded.logits(batch), rebuilt.logits(batch)
        diffs[name] = float((original - again).abs().max())
        if not torch.equal(original, again):
            raise ExportError(
                f"{record_path}: the network rebuilt from it gives other logits than the "
                f"checkpoint's on the {name} inputs (max abs diff {diffs[name]:.2e}); the files "
                "are kept for inspection"
            )
    log.info("rebuilt from %s: identical logits", record_path)
    return ExportResult([weights, record_path], diffs)


def export_record(loaded: LoadedModel, weights: str) -> dict[str, Any]:
    """Return the JSON of a safetensors export: the model config, the data keys predicting
    needs, the class names and the weights file's name (beside the JSON)."""
    model = OmegaConf.to_container(loaded.config.model, resolve=True)
    if "pretrained" in model:
        model["pretrained"] = None  # the weights are the export's, a start file means nothing
    data = OmegaConf.to_container(loaded.config.data, resolve=True)
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "weights": weights,
        "classes": list(loaded.classes),
        "model": model,
        "data": {key: data[key] for key in DATA_KEYS},
        "module": {"test_time_flip": loaded.test_time_flip},
    }


def load_export(path: str | Path, device: str = "cpu") -> LoadedModel:
    """Return the network of a safetensors export's model.json, with its weights, class
    names and eval transform, on `device` ("auto": CUDA when there)."""
    path = Path(path)
    record = _read_record(path)
    sections = {key: record[key] for key in ("model", "data", "module") if key in record}
    run = trusted_run_config(sections, path)
    missing = [key for key in DATA_KEYS if key not in run.data]
    if missing:
        raise ExportFileError(f"{path}: its data section lacks {missing}. {_REEXPORT}")
    network = build_model(run.model, pretrained_weights=False)
    weights = _weights_file(path, record["weights"])
    safetensors_torch = optional_module("safetensors.torch", "reading a safetensors export")
    try:
        state = safetensors_torch.load_file(str(weights))
    # The reader raises its own error type for a truncated or foreign file.
    except Exception as error:
        raise ExportFileError(f"{weights} could not be read ({error}). {_REEXPORT}") from error
    check_compatible(state, network, weights)
    network.load_state_dict(state)
    check_classes(record["classes"], int(run.data.num_classes), str(path))
    flip = bool(run.get("module", {}).get("test_time_flip", False))
    return ready(network, run, list(record["classes"]), device, test_time_flip=flip)


_REEXPORT = "Export the checkpoint again: convnet export ckpt_path=<ckpt> format=safetensors"


def _read_record(path: Path) -> dict[str, Any]:
    """Return the plain JSON of an export's model.json, checked to be one."""
    if not path.is_file():
        raise ExportFileError(f"{path}: no such file. {_REEXPORT}")
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportFileError(f"{path} is not JSON ({error}). {_REEXPORT}") from None
    if not isinstance(record, dict) or record.get("format") != EXPORT_FORMAT:
        raise ExportFileError(
            f'{path} is not a convnet export (no "format": "{EXPORT_FORMAT}"). {_REEXPORT}'
        )
    version = record.get("version")
    if not isinstance(version, int) or not 1 <= version <= EXPORT_VERSION:
        raise ExportFileError(
            f"{path} has version {version!r}; this convnet reads versions 1..{EXPORT_VERSION}. "
            "Upgrade convnet, or export the checkpoint with this one."
        )
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise ExportFileError(f"{path} lacks {missing}. {_REEXPORT}")
    return record


def _weights_file(record_path: Path, name: Any) -> Path:
    """Return the weights file a model.json names: a .safetensors file beside it."""
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors"):
        raise ExportFileError(
            f'{record_path}: "weights" is {name!r}, not the name of a .safetensors file '
            f"beside it. {_REEXPORT}"
        )
    weights = record_path.parent / name
    if not weights.is_file():
        raise ExportFileError(
            f"{record_path} names weights {name}, which is not beside it ({weights}): keep the "
            "two files of an export together"
        )
    return weights


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Show only warnings and errors of the loggers `names` while inside."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def optional_module(name: str, purpose: str) -> Any:
    """Return the module `name`, or raise ConfigError naming the extra that installs it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"{purpose} needs the package {error.name}, which is not installed: "
            "pip install 'convnet[export]'"
        ) from error
