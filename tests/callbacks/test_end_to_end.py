"""Whole runs with `callbacks=default`: what TensorBoard reads back, the same weights as
without the pictures, and scripts/visualize.py's PNG files."""

import io
import itertools
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from rich.console import Console
from tensorboard.plugins.hparams import plugin_data_pb2

from convnet.benchmarks import VISUAL_CALLBACKS, callbacks_overhead
from convnet.checks import ConfigError
from convnet.train import train
from convnet.visualize import visualize
from tests.callbacks.conftest import logged_images, read_events
from tests.compose import TINY_SHAPES, compose_config

pytestmark = pytest.mark.slow

QUIET = ["callbacks.rich_progress_bar=null", "callbacks.layer_summary=null"]
# 4 steps per epoch: filters and mistakes every epoch, the others every 2 or 4 and after
# the last (configs/callbacks/pictures.yaml).
RUN = [
    *TINY_SHAPES,
    *QUIET,
    "data.source.num_train=256",
    "data.source.num_val=100",
    "data.eval_batch_size=100",
    "callbacks.filter_response.steps=4",
    "trainer.max_epochs=2",
    "test=false",
]
STAGES = ["stage1", "stage2", "stage3"]  # the small VGG's, as it declares them
PAGES = {"feature_maps": ["classes_0-3", "classes_4-6", "classes_7-9"],
         "gradcam": ["classes_0-4", "classes_5-9"]}  # fmt: skip
IMAGES = {
    **{f"{stage}/filters": [0, 4, 8] for stage in STAGES},
    **{f"{stage}/filters/change": [4, 8] for stage in STAGES},
    **{
        f"{stage}/feature_maps/{part}": [0, 8] for stage in STAGES for part in PAGES["feature_maps"]
    },
    # Not at step 0: an untrained network's responses and attention are noise.
    **{f"{stage}/filter_response": [8] for stage in STAGES[1:]},
    **{f"stage3/gradcam/{part}": [8] for part in PAGES["gradcam"]},
    "mistakes/confusion_matrix": [4, 8],
}
MISCLASSIFIED = "mistakes/misclassified/"  # pages of the 12 kept, as many a page as fit


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Train the same seeded run with and without the picture callbacks."""
    root = tmp_path_factory.mktemp("runs")
    without = [f"callbacks.{name}=null" for name in VISUAL_CALLBACKS]
    for name, extra in [("with", []), ("without", without)]:
        train(compose_config("train", [*RUN, *extra], root, output_dir=root / name))
    return {"with": root / "with", "without": root / "without"}


def test_the_pictures_do_not_change_the_trained_weights(runs) -> None:
    a = torch.load(runs["with"] / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(runs["without"] / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=0, atol=0, msg=key)


def test_tensorboard_reads_back_every_picture_at_its_steps(runs) -> None:
    events = read_events(runs["with"] / "tensorboard")
    tags = set(logged_images(events))
    misclassified = {tag for tag in tags if tag.startswith(MISCLASSIFIED)}
    assert tags - misclassified == set(IMAGES)
    pages = sorted(
        tuple(map(int, tag.removeprefix(MISCLASSIFIED).split("-"))) for tag in misclassified
    )
    assert pages[0][0] == 1 and all(a[1] + 1 == b[0] for a, b in itertools.pairwise(pages))
    for tag, steps in IMAGES.items():
        assert [image.step for image in logged_images(events)[tag]] == steps, tag
    for tag in tags:
        assert events.SummaryMetadata(tag).summary_description, tag
        image = logged_images(events)[tag][-1]
        assert (image.width <= 500 and image.height <= 300) or "filter_response" in tag, tag
    # 32 first-layer filters, strongest first: 8 a row of 36-pixel tiles, 4 rows.
    first = logged_images(events)["stage1/filters"][0]
    assert first.height == 4 * (36 + 3 + 5 + 24 + 6)


def test_histograms_class_accuracy_and_hparams_are_logged(runs) -> None:
    events = read_events(runs["with"] / "tensorboard")
    layers = ["stage1/features.0", "stage2/features.4", "stage3/features.8", "head/classifier.0"]
    expected = {f"{kind}/{layer}" for kind in ("weights", "gradients") for layer in layers}
    assert set(events.Tags()["histograms"]) == expected
    assert [h.step for h in events.Histograms("gradients/stage1/features.0")] == [0]
    # The weights at the first step and after the last (2 epochs of 4 steps).
    weights = events.Histograms("weights/stage1/features.0")
    assert [h.step for h in weights] == [0, 8]
    assert weights[0].histogram_value.num == 32 * 3 * 3 * 3
    # Logged with val/acc, at Lightning's step for epoch-end validation metrics.
    steps = [e.step for e in events.Scalars("val_class_acc/circle")]
    assert steps == [e.step for e in events.Scalars("val/acc")] and len(steps) == 2
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["model"].string_value == "small"
    assert hparams["lr"].number_value == pytest.approx(0.2)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metrics = [info.name.tag for info in experiment.experiment.metric_infos]
    assert "val/acc_best" in metrics


def test_the_projector_gets_features_sprites_and_labels(runs) -> None:
    board = runs["with"] / "tensorboard"
    config = (board / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "embeddings latest (step 8)"' in config and "sprite.png" in config
    folder = board / "00008" / "embeddings"
    metadata = (folder / "metadata.tsv").read_text().splitlines()
    # 20 per class, but the 100 validation images hold fewer of some classes.
    rows = len((folder / "tensors.tsv").read_text().splitlines())
    assert metadata[0] == "class\tpredicted" and len(metadata) == 1 + rows
    assert {line.split("\t")[0] for line in metadata[1:]} >= {"circle", "crescent"}
    side = math.ceil(math.sqrt(rows)) * 32
    assert Image.open(folder / "sprite.png").size == (side, side)


def test_visualize_writes_the_same_pictures_as_png(runs, tmp_path) -> None:
    checkpoint = runs["with"] / "checkpoints/last.ckpt"
    image = tmp_path / "photo.png"
    Image.new("RGB", (50, 40), (200, 30, 30)).save(image)
    cfg = compose_config(
        "visualize",
        [f"ckpt_path={checkpoint}", f"image={image}", "callbacks.filter_response.steps=2"],
        tmp_path,
    )
    written = visualize(cfg)
    folder = Path(cfg.output_dir)
    drawn = {p.relative_to(folder).with_suffix("").as_posix() for p in written}
    # A checkpoint has no weights from the start: no change pictures; one given image.
    expected = {tag for tag in IMAGES if not tag.endswith("/change") and "classes" not in tag}
    assert drawn - {t for t in drawn if t.startswith(MISCLASSIFIED)} == expected | {
        f"{stage}/feature_maps/image" for stage in STAGES
    } | {"stage3/gradcam/image"}
    maps = Image.open(folder / "stage2" / "feature_maps" / "image.png")
    assert maps.height == 42 + 24 + 6  # one row: the given image
    assert "stage2" in (folder / "stage2" / "feature_maps" / "image.txt").read_text()


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("image={tmp}/notes.png", r"image=.*notes\.png: not an image file PIL can read"),
        ("image={tmp}/photos", r"image=.*photos is a folder: give one image file, e\.g\. image="),
        ("image={tmp}/gone.png", r"image=.*gone\.png: no such file"),
        ("callbacks=none", r"no picture callback in `callbacks`"),
        ("device=tpu", r"device='tpu' is not allowed"),
    ],
)
def test_visualize_refuses_what_it_cannot_draw_before_the_checkpoint_is_read(
    override: str, said: str, tmp_path: Path
) -> None:
    (tmp_path / "notes.png").write_text("not a picture")
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "a.png")
    given = override.format(tmp=tmp_path)
    # No checkpoint there: each of these is named before one would be read.
    cfg = compose_config("visualize", ["ckpt_path=nowhere.ckpt", given], tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=said):
        visualize(cfg)
    assert not Path(cfg.output_dir).exists()  # nothing was drawn


def test_the_benchmark_times_both_arms_and_each_callback(tmp_path) -> None:
    tiny = [o for o in RUN if o != "test=false"]
    table = callbacks_overhead(
        repeats=1, overrides=[*tiny, "trainer.max_epochs=1"], output_dir=tmp_path
    )
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    text = console.export_text()
    assert "without" in text and "FilterResponse" in text and "all pictures" in text
    assert {p.name for p in tmp_path.iterdir()} == {"without-0", "with-0"}


def test_visualize_keeps_the_pictures_an_output_dir_holds_unless_overwrite_is_true(
    runs, tmp_path
) -> None:
    checkpoint = runs["with"] / "checkpoints/last.ckpt"
    folder = tmp_path / "pictures"
    (folder / "stage1").mkdir(parents=True)
    (folder / "stage1" / "filters.png").write_bytes(b"another checkpoint's filters")
    overrides = [f"ckpt_path={checkpoint}", f"output_dir={folder}", "callbacks=none"]
    with pytest.raises(ConfigError, match=r"holds 1 file already \(stage1/filters\.png\)"):
        visualize(compose_config("visualize", overrides, tmp_path))
    assert (folder / "stage1" / "filters.png").read_bytes() == b"another checkpoint's filters"
