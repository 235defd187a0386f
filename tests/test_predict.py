"""The Python API's train and load, and predict: on a trained run, the top-1 of predict
over the val images is what eval counts as correct; bad inputs are named and skipped."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from convnet import api
from convnet import predict as predict_module
from convnet.checkpoints import CheckpointError
from convnet.config import ConfigError
from convnet.evaluate import evaluate, load_checkpoint, run_config
from convnet.inference import EvalTransform, LoadedModel
from convnet.module import CLASSES_KEY
from convnet.predict import predict
from tests.compose import REPO, compose_config
from tests.scripts import run_script

DIGITS = [str(digit) for digit in range(10)]

# Three epochs of scikit-learn's digits at their own 8x8 (90% val accuracy in seconds): a
# network whose predictions mean something, on images no resize touches.
QUICK = [
    "data=digits",
    "data.image_size=[8,8]",
    "trainer.max_epochs=3",
    "callbacks=minimal",
    "callbacks.rich_progress_bar=null",
    "logger=none",
    "test=false",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> api.TrainResult:
    """A tiny run trained through the API, in its own outputs/ folder."""
    root = tmp_path_factory.mktemp("api")
    return api.train([*QUICK, f"paths.root_dir={root}"])


@pytest.fixture(scope="module")
def val_folder(run: api.TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's val images as greyscale PNG files (lossless) in folders named by class."""
    folder = tmp_path_factory.mktemp("val")
    stored = run_config(load_checkpoint(run.last_checkpoint), None, run.last_checkpoint)
    datamodule = instantiate(stored.data)
    datamodule.setup("validate")
    val = datamodule.splits.val
    for index, (image, label) in enumerate(zip(val.images, val.labels, strict=True)):
        path = folder / datamodule.classes[int(label)] / f"{index:04d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy()).save(path)  # (1, H, W) -> mode L
    return folder


def _predict(run: api.TrainResult, tmp_path: Path, *overrides: str) -> list:
    cfg = compose_config(
        "predict", [f"ckpt_path={run.last_checkpoint}", "device=cpu", *overrides], tmp_path
    )
    return predict(cfg)


def test_train_returns_the_metrics_and_a_fresh_run_folder(run: api.TrainResult) -> None:
    assert 0 <= run.metrics["val/acc"] <= 1
    assert run.run_dir.parent.parts[-3:] == ("outputs", "train", "runs")
    assert run.last_checkpoint.is_file()
    assert (run.run_dir / "config.yaml").is_file()


def test_each_composed_run_gets_its_own_folder(tmp_path: Path) -> None:
    first = api.compose_run([f"paths.root_dir={tmp_path}"])
    second = api.compose_run([f"paths.root_dir={tmp_path}"])
    folders = {Path(first.paths.output_dir), Path(second.paths.output_dir)}
    assert len(folders) == 2
    assert all(f.is_dir() and f.parent == tmp_path / "outputs" / "train" / "runs" for f in folders)


def test_load_gives_the_network_its_class_names_and_eval_transform(run: api.TrainResult) -> None:
    model = api.load(run.last_checkpoint, device="cpu")
    assert model.classes == DIGITS
    assert not model.network.training
    assert model.transform.image_size == (8, 8) and model.transform.in_channels == 1
    images = [
        torch.zeros(3, 50, 40, dtype=torch.uint8),
        torch.full((3, 32, 32), 255, dtype=torch.uint8),
    ]
    probabilities = model.probabilities([model.transform.image(image) for image in images])
    assert probabilities.shape == (2, 10)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2))


def test_predict_top1_over_the_val_images_is_what_eval_counts_correct(
    run: api.TrainResult, val_folder: Path, tmp_path: Path
) -> None:
    # Both in fp32: in bf16, batches of another size round differently (oneDNN blocks them
    # by size and thread count), enough to flip a near-tie; the data paths are what differ.
    predictions = _predict(
        run, tmp_path, f"inputs={val_folder}", "top_k=3", "batch_size=50", "precision=32-true"
    )
    top1 = [p.classes[0] for p in predictions]
    assert len(predictions) == len(list(val_folder.glob("*/*.png"))) and len(set(top1)) == 10
    correct = [p.classes[0] == Path(p.path).parent.name for p in predictions]
    overrides = [f"ckpt_path={run.last_checkpoint}", "splits=[val]", "trainer.precision=32-true"]
    eval_cfg = compose_config("eval", overrides, tmp_path, tmp_path / "eval")
    assert np.mean(correct) == pytest.approx(evaluate(eval_cfg)["val"]["acc"], abs=1e-6)
    with (tmp_path / "run" / "predictions.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["class_1"] for row in rows] == top1
    assert list(rows[0])[:3] == ["path", "class_1", "probability_1"]
    assert all(float(r["probability_1"]) >= float(r["probability_3"]) for r in rows)


def test_bad_inputs_get_one_line_each_and_the_rest_are_predicted(
    run: api.TrainResult, val_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = next(val_folder.glob("*/*.png"))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing.jpg"
    with caplog.at_level(logging.WARNING, logger="convnet.predict"):
        predictions = _predict(run, tmp_path, f"inputs=[{text},{missing},{good},{empty}]")
    for bad in (text, missing, empty):
        assert sum(str(bad) in r.getMessage() for r in caplog.records) == 1, bad
    by_path = {p.path: p for p in predictions}
    assert by_path[str(good)].error is None and len(by_path[str(good)].classes) == 5
    assert "cannot read it as an image" in by_path[str(text)].error
    assert by_path[str(missing)].error == "no such file or folder"
    assert "no image files" in by_path[str(empty)].error


def test_inputs_that_are_all_unreadable_are_an_error(run: api.TrainResult, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="none of them is an image file"):
        _predict(run, tmp_path, f"inputs={text}")


@pytest.mark.parametrize("inputs", ["[]", "[{missing}]", "[{missing},{empty}]"])
def test_inputs_that_name_no_file_are_refused_before_the_checkpoint_is_read(
    inputs: str, run: api.TrainResult, tmp_path: Path, monkeypatch
) -> None:
    missing, empty = tmp_path / "nothing.png", tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(predict_module, "load", _never_called)
    output = tmp_path / "out.csv"
    given = inputs.format(missing=missing, empty=empty)
    with pytest.raises(ValueError, match=r"names no image file \((the list is empty|.*nothing)"):
        _predict(run, tmp_path, f"inputs={given}", f"output={output}")
    assert not output.exists()


def _never_called(*args: object, **kwargs: object) -> None:
    raise AssertionError("the checkpoint was read")


def test_the_eval_transform_converts_size_and_channels_as_pil_does(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    transform = EvalTransform(1, [15, 20], mean=[0.5], std=[0.25])
    image = transform.read(tmp_path / "photo.png")
    reference = np.asarray(Image.fromarray(rgb).convert("L").resize((20, 15), Image.BILINEAR))
    assert image.shape == (1, 15, 20) and image.dtype == torch.uint8
    assert np.abs(image[0].numpy().astype(int) - reference).max() <= 2
    batch = transform([image])
    expected = (image.float() / 255 - 0.5) / 0.25
    assert torch.allclose(batch[0], expected, atol=1e-5)


@pytest.mark.parametrize(
    ("images", "problem"),
    [
        ([torch.zeros(1, 8, 8)], r"torch\.float32, not uint8 .* \(image \* 255\)\.round\(\)"),
        ([torch.zeros(3, 8, 8, dtype=torch.uint8)], "have 3 channels and this network takes 1"),
        ([torch.zeros(8, 8, dtype=torch.uint8)], r"image 0 is \(8, 8\), not a \(1, H, W\)"),
        (torch.zeros(1, 8, 8, dtype=torch.uint8), r"\(N, C, H, W\) tensor, not one of shape"),
        (
            [torch.zeros(1, 8, 8, dtype=torch.uint8), torch.zeros(1, 9, 9, dtype=torch.uint8)],
            r"different shapes \(\(1, 8, 8\), \(1, 9, 9\)\)",
        ),
    ],
    ids=["float", "channels", "no_channel_axis", "one_image_as_a_batch", "two_sizes"],
)
def test_images_the_network_cannot_take_are_named_before_it_runs(
    images: list[torch.Tensor] | torch.Tensor, problem: str
) -> None:
    pool = torch.nn.AdaptiveAvgPool2d(1)
    network = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), pool, torch.nn.Flatten(1))
    model = LoadedModel(
        network, ["a", "b"], EvalTransform(1, 8, [0.5], [0.25]), None, torch.device("cpu")
    )
    with pytest.raises(ValueError, match=problem):
        model.probabilities(images)
    # No images: no probabilities, one column a class.
    assert model.probabilities([]).shape == (0, 2)


def test_data_keys_the_stored_data_config_lacks_are_named_with_the_keys_it_has(
    run: api.TrainResult,
) -> None:
    # digits: no image folder's source.root, and a misspelt key is answered with the key meant.
    for data, problem in [
        ({"nosuch": 1}, r"no key `nosuch` in data \(data has source, in_channels, .*\)$"),
        ({"eval_batch_sise": 5}, r"did you mean data\.eval_batch_size or data\.batch_size\?$"),
        ({"source": {"root": "/photos"}}, r"no key `root` in data\.source \(data\.source has "),
        ({"mean": {"red": 0.5}}, r"data\.mean of the checkpoint's config is a value"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            api.load(run.last_checkpoint, data=data, device="cpu")
    assert (
        api.load(run.last_checkpoint, data={"eval_batch_size": 7}).config.data.eval_batch_size == 7
    )


def test_a_checkpoint_without_class_names_takes_its_datas(
    run: api.TrainResult, tmp_path: Path
) -> None:
    checkpoint = torch.load(run.last_checkpoint, weights_only=True)
    del checkpoint[CLASSES_KEY]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    assert api.load(tmp_path / "old.ckpt", device="cpu").classes == DIGITS
    checkpoint[CLASSES_KEY] = ["0", "1"]
    torch.save(checkpoint, tmp_path / "wrong.ckpt")
    with pytest.raises(CheckpointError, match="names 2 classes but its network has 10"):
        api.load(tmp_path / "wrong.ckpt", device="cpu")


@pytest.mark.slow
def test_the_predict_script_writes_its_csv_and_names_a_missing_file(
    run: api.TrainResult, val_folder: Path, tmp_path: Path
) -> None:
    good = next(val_folder.glob("*/*.png"))
    command = [REPO / "scripts" / "predict.py", f"ckpt_path={run.last_checkpoint}",
               f"inputs=[{good},gone.png]"]  # fmt: skip
    result = run_script(command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gone.png: no such file or folder; skipped" in result.stdout + result.stderr
    (csv_file,) = (tmp_path / "outputs" / "predict" / "runs").glob("*/predictions.csv")
    assert len(csv_file.read_text().splitlines()) == 3


def test_a_greyscale_file_keeps_its_values_for_a_greyscale_network(tmp_path: Path) -> None:
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(pixels).save(tmp_path / "grey.png")
    image = EvalTransform(1, 16, mean=[0.5], std=[0.5]).read(tmp_path / "grey.png")
    assert np.array_equal(image[0].numpy(), pixels)


def test_training_from_python_names_a_missing_key_before_making_a_folder(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"optimizer has no key `lrr`; did you mean optimizer\.lr"
    ):
        api.train(["optimizer.lrr=0.1", f"paths.root_dir={tmp_path}"])
    assert not (tmp_path / "outputs").exists()


def test_an_output_file_that_exists_is_kept_unless_overwrite_is_true(
    run: api.TrainResult, val_folder: Path, tmp_path: Path
) -> None:
    output = tmp_path / "mine.csv"
    output.write_text("my notes\n")
    with pytest.raises(ConfigError, match=r"output=.*mine\.csv exists already"):
        _predict(run, tmp_path, f"inputs={val_folder}", f"output={output}")
    assert output.read_text() == "my notes\n"
    _predict(run, tmp_path, f"inputs={val_folder}", f"output={output}", "overwrite=true")
    assert output.read_text().startswith("path,class_1,probability_1,")
    with pytest.raises(ConfigError, match=r"output=.* is a folder: give the CSV file to write"):
        _predict(run, tmp_path, f"inputs={val_folder}", f"output={tmp_path}", "overwrite=true")
