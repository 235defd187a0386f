"""Classify image files with a trained network: top-k classes and their probabilities.

    python scripts/predict.py ckpt_path=<run>/checkpoints/last.ckpt inputs=path/to/images

Each image is read as image folders read it (convnet.data.folder.read_image: EXIF rotation,
16-bit greyscale), converted to what the network takes (the checkpoint's image size,
channels and normalisation) and classified a batch at a time, on the GPU when there. A file
that cannot be read, or a path that is not there, gets one line saying so (and a row with
its reason in the CSV); the rest are still classified.
"""

from __future__ import annotations

import contextlib
import csv
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.table import Table
from torchvision.datasets.folder import IMG_EXTENSIONS

from convnet.api import load
from convnet.build import precision_for
from convnet.checks import (
    ConfigError,
    choose,
    counted,
    keep_existing,
    non_negative_int,
    positive_int,
)
from convnet.console import show
from convnet.inference import LoadedModel

log = logging.getLogger(__name__)

# Autocast's dtype for each precision predict takes; None: float32.
PRECISIONS = {
    "auto": None,
    "32-true": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}


@dataclass(frozen=True)
class Prediction:
    """One input's top classes, most probable first, or why it was not classified."""

    path: str
    classes: tuple[str, ...] = ()
    probabilities: tuple[float, ...] = ()
    error: str | None = None


def predict(cfg: DictConfig) -> list[Prediction]:
    """Classify `cfg.inputs` (image files and folders) with `cfg.ckpt_path` (a checkpoint,
    or a safetensors export's model.json); show the top-k table, write the CSV to
    `cfg.output`, and return one Prediction per input file."""
    if Path(cfg.output).is_dir():
        raise ConfigError(
            f"output={cfg.output} is a folder: give the CSV file to write, e.g. "
            f"output={Path(cfg.output) / 'predictions.csv'}"
        )
    keep_existing([Path(cfg.output)], "output", cfg.output, cfg.get("overwrite", False))
    asked_k, batch_size = (
        positive_int(cfg.top_k, "top_k"),
        positive_int(cfg.batch_size, "batch_size"),
    )
    inputs = _as_list(cfg.inputs)
    files, missing = image_files(inputs)
    if not files:  # before the checkpoint is read: nothing to classify
        found = "; ".join(f"{p.path}: {p.error}" for p in missing) or "the list is empty"
        raise ValueError(
            f"inputs={inputs} names no image file ({found}). Give image files, or folders that "
            "hold some: inputs=photo.jpg, inputs=photos/ or inputs=[a.jpg,photos/]"
        )
    loaded = load(cfg.ckpt_path, cfg.get("data"), device=cfg.get("device", "auto"))
    loaded.transform.check_takes_files()
    top_k = min(asked_k, len(loaded.classes))
    with _autocast(loaded, cfg.get("precision", "auto")):
        found = predict_files(loaded, files, top_k, batch_size)
    predictions = missing + found
    show(predictions_table(predictions, f"{cfg.ckpt_path}: top {top_k}", cfg.table_rows))
    output = write_csv(predictions, Path(cfg.output), top_k)
    skipped = f" ({counted(_failed(predictions), 'input')} skipped, listed there too)"
    log.info(
        "%d predictions written to %s%s",
        len(found) - _failed(found),
        output,
        skipped if _failed(predictions) else "",
    )
    if _failed(predictions) == len(predictions):
        raise ValueError(
            f"inputs={_as_list(cfg.inputs)}: none of them is an image file that could be read "
            "(each is listed above). Give image files, or folders that hold some."
        )
    return predictions


def image_files(inputs: Sequence[str]) -> tuple[list[Path], list[Prediction]]:
    """Return the files `inputs` name (a folder: its image files, in sorted order, searched
    recursively) and a failed Prediction for each input that is not there."""
    files: list[Path] = []
    missing: list[Prediction] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            inside = _images_under(path)
            if not inside:
                missing.append(
                    _failure(
                        str(path), f"the folder holds no image files ({', '.join(IMG_EXTENSIONS)})"
                    )
                )
            files += inside
        elif path.is_file():
            files.append(path)
        else:
            missing.append(_failure(str(path), "no such file or folder"))
    return files, missing


def predict_files(
    loaded: LoadedModel, files: Sequence[Path], top_k: int, batch_size: int
) -> list[Prediction]:
    """Return the top `top_k` classes of each file, `batch_size` files at a time; a file
    that cannot be read as an image gets a Prediction with its error."""
    predictions: list[Prediction] = []
    for start in range(0, len(files), batch_size):
        images, readable = [], []
        for path in files[start : start + batch_size]:
            try:
                images.append(loaded.transform.read(path))
            # Decoders raise many exception types for malformed input; each means "unusable".
            except Exception as error:
                predictions.append(_failure(str(path), f"cannot read it as an image ({error})"))
                continue
            readable.append(path)
        if not images:
            continue
        probabilities, indices = loaded.probabilities(images).topk(top_k, dim=1)
        for path, row, classes in zip(
            readable, probabilities.tolist(), indices.tolist(), strict=True
        ):
            names = tuple(loaded.classes[index] for index in classes)
            predictions.append(Prediction(str(path), names, tuple(row)))
    return predictions


def predictions_table(predictions: Sequence[Prediction], title: str, rows: int) -> Table:
    """Return a table of the first `rows` predictions: the top class, its probability and
    the next classes; failed inputs with their reason."""
    table = Table(title=title)
    for column, justify in (
        ("file", "left"),
        ("class", "left"),
        ("probability", "right"),
        ("next", "left"),
    ):
        table.add_column(column, justify=justify)
    rows = non_negative_int(rows, "table_rows")
    for prediction in predictions[:rows]:
        if prediction.error is not None:
            table.add_row(prediction.path, f"[red]{prediction.error}", "", "")
            continue
        others = zip(prediction.classes[1:], prediction.probabilities[1:], strict=True)
        table.add_row(
            prediction.path,
            prediction.classes[0],
            f"{prediction.probabilities[0]:.4f}",
            ", ".join(f"{name} {p:.4f}" for name, p in others),
        )
    if len(predictions) > rows:
        table.caption = f"{len(predictions) - rows} more in the CSV"
    return table


def write_csv(predictions: Sequence[Prediction], path: Path, top_k: int) -> Path:
    """Write one row per input (path, class_1, probability_1, ..., error) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ["path"]
    for rank in range(1, top_k + 1):
        header += [f"class_{rank}", f"probability_{rank}"]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*header, "error"])
        for prediction in predictions:
            ranked = [
                value
                for name, p in zip(prediction.classes, prediction.probabilities, strict=True)
                for value in (name, f"{p:.6f}")
            ]
            ranked += [""] * (2 * top_k - len(ranked))
            writer.writerow([prediction.path, *ranked, prediction.error or ""])
    return path


def _failure(path: str, reason: str) -> Prediction:
    log.warning("%s: %s; skipped", path, reason)
    return Prediction(path, error=reason)


def _failed(predictions: Sequence[Prediction]) -> int:
    return sum(prediction.error is not None for prediction in predictions)


def _as_list(inputs: object) -> list[str]:
    if isinstance(inputs, ListConfig):
        return [str(item) for item in OmegaConf.to_container(inputs)]
    if isinstance(inputs, str | Path):
        return [str(inputs)]
    raise ConfigError(
        f"inputs={inputs!r}: give an image file or a folder (inputs=path/to/images) or a "
        "list of them (inputs=[a.jpg,b.png])"
    )


def _images_under(folder: Path) -> list[Path]:
    # Dot-entries (.DS_Store, .ipynb_checkpoints) are tool debris, never images.
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in IMG_EXTENSIONS
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


@contextlib.contextmanager
def _autocast(loaded: LoadedModel, precision: str) -> Iterator[None]:
    """Run the network in `precision`: `auto` is what eval runs it in (bf16 mixed on CUDA,
    float32 elsewhere; see convnet.build.precision_for)."""
    choose(PRECISIONS, "precision", precision)
    trainer = OmegaConf.create({"accelerator": loaded.device.type, "precision": precision})
    dtype = PRECISIONS.get(precision_for(trainer))
    with torch.autocast(loaded.device.type, dtype=dtype, enabled=dtype is not None):
        yield
