"""Every picture as TensorBoard reads it back: a description on every image tag, every
picture within TensorBoard's card, one stage name across picture kinds and model families."""

import re

import pytest
import torch
from hydra.utils import instantiate
from torch.utils.tensorboard import SummaryWriter

from convnet.build import build_model
from convnet.callbacks import FeatureMaps, FilterImages, FilterResponse, GradCAM
from convnet.callbacks.base import PictureContext, write_pictures
from convnet.callbacks.render import MAX_SIZE
from convnet.callbacks.state import left_as_found
from tests.callbacks.conftest import logged_images, read_events
from tests.compose import TINY_SHAPES, compose_config

pytestmark = pytest.mark.slow

MODELS = ["small", "vgg11", "resnet20", "resnet9", "custom"]
TAG = re.compile(r"^(stem|stage\d+)/(filters|feature_maps|filter_response|gradcam)(/[\w.-]+)*$")


def _pictures(model: str, tmp_path):
    cfg = compose_config("train", [*TINY_SHAPES, f"model={model}"], tmp_path)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    torch.manual_seed(0)
    network = build_model(cfg.model, pretrained_weights=False)
    context = PictureContext(network, datamodule, "cpu")
    callbacks = [FilterImages(), FeatureMaps(), FilterResponse(steps=1), GradCAM()]
    pictures = []
    with left_as_found(network):
        for callback in callbacks:
            pictures += callback.pictures(context)
    return pictures, [stage.name for stage in context.stages()]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Each model's pictures, written and read back with TensorBoard's own reader."""
    found = {}
    for model in MODELS:
        folder = tmp_path_factory.mktemp(model)
        pictures, stages = _pictures(model, folder)
        writer = SummaryWriter(str(folder / "tb"))
        write_pictures([writer], pictures, step=0)
        writer.close()
        found[model] = (read_events(folder / "tb"), stages)
    return found


@pytest.mark.parametrize("model", MODELS)
def test_every_image_tag_has_a_description_and_fits_the_card(logged, model) -> None:
    events, _ = logged[model]
    tags = logged_images(events)
    assert tags
    for tag in tags:
        metadata = events.SummaryMetadata(tag)
        assert len(metadata.summary_description) > 80, tag
        assert metadata.display_name, tag
        assert TAG.match(tag), tag
        if "/filter_response" not in tag:  # see the test below
            (image,) = logged_images(events)[tag]
            assert image.width <= MAX_SIZE[0] and image.height <= MAX_SIZE[1], tag


def test_filter_response_fits_the_card(logged) -> None:
    events, _ = logged["small"]
    for tag in logged_images(events):
        if "/filter_response" in tag:
            (image,) = logged_images(events)[tag]
            assert image.width <= MAX_SIZE[0] and image.height <= MAX_SIZE[1], tag


@pytest.mark.parametrize("model", MODELS)
def test_one_stage_name_across_picture_kinds(logged, model) -> None:
    events, stages = logged[model]
    kinds: dict[str, set[str]] = {}
    for tag in logged_images(events):
        stage, kind = tag.split("/")[:2]
        kinds.setdefault(kind, set()).add(stage)
    assert kinds["filters"] - {"stem"} == set(stages)
    assert kinds["feature_maps"] == set(stages)
    assert kinds["filter_response"] <= set(stages)
    assert kinds["gradcam"] == {stages[-1]}
    for kind in ("filters", "feature_maps", "filter_response", "gradcam"):
        for tag in logged_images(events):
            if f"/{kind}" in tag:
                module = tag.split("/")[0]
                assert f"{module} " in events.SummaryMetadata(tag).display_name


def test_model_families_share_their_picture_tags(logged) -> None:
    tags = {model: set(logged_images(events)) for model, (events, _) in logged.items()}
    shared = set.intersection(*tags.values())
    for kind in ("stage1/filters", "stage1/feature_maps/classes_0-3", "stage2/filter_response"):
        assert kind in shared, kind
    assert {tag for tag in shared if "gradcam" in tag} or len(
        {s[-1] for _, s in logged.values()}
    ) > 1
