"""Layer summaries: receptive fields by hand, MACs by formula, totals against torchvision."""

import re
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torchvision
from lightning.pytorch.callbacks import ModelSummary
from rich.console import Console
from scripts.summary import main as summary_main
from torch import nn

from convnet.callbacks.model_summary import LayerSummary
from convnet.models import ResNet
from convnet.summary import summarize, summary_table


def last_field(model: nn.Module, size: int = 32, channels: int = 1) -> tuple[int, int]:
    """Return (receptive field, jump) of the model's output, for square maps."""
    row = summarize(model, channels, size).rows[-1]
    return row.field.size[0], row.field.jump[0]


def test_two_3x3_convs_see_5_pixels():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3))
    assert last_field(model) == (5, 1)


def test_conv_pool_conv_sees_8_pixels():
    # 3, then the 2x2/2 pool adds 1 (jump 2), then 3x3 at jump 2 adds 2 * 2: 3 + 1 + 4 = 8.
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3))
    assert last_field(model) == (8, 2)


def test_dilation_widens_the_field_without_weights():
    # A 3x3 conv with dilation 2 spans 5 pixels; a 3x3 conv after it adds 2: 7.
    assert last_field(nn.Conv2d(1, 1, 3, dilation=2)) == (5, 1)
    assert last_field(nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2), nn.Conv2d(1, 1, 3))) == (7, 1)


def test_strides_multiply_the_jump():
    model = nn.Sequential(
        nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3)
    )
    # 3; + 2 * 2 = 7 (jump 4); + 2 * 4 = 15.
    assert last_field(model) == (15, 4)


def test_flatten_then_dense_sees_the_whole_map():
    # A 3x3 conv on 8x8 leaves 6x6 values 1 pixel apart: together they see 3 + 5 = 8 pixels.
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 4))
    assert last_field(model, size=8) == (8, 1)


def test_resnet18_field_follows_the_main_path():
    # conv 7/2: 7 (jump 2); max-pool 3/2: 11 (jump 4); layer1, four 3x3: 11 + 4*2*4 = 43;
    # each later stage: a strided 3x3 at the old jump, three 3x3 at the doubled jump:
    # 43 + 2*4 + 3*2*8 = 99; 99 + 2*8 + 3*2*16 = 211; 211 + 2*16 + 3*2*32 = 435 (jump 32).
    rows = {row.name: row for row in summarize(torchvision.models.resnet18(), 3, 224).rows}
    assert rows["layer4.1.relu"].field.size == (435, 435)
    assert rows["layer4.1.relu"].field.jump == (32, 32)
    assert rows["layer1.1.relu"].field.size == (43, 43)


def test_conv_macs_match_the_formula():
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4)
    (_, row) = summarize(conv, 8, 17).rows
    # Each of 16 x 9 x 9 outputs sums 3 x 3 x (8 / 4) products.
    assert row.output_shape == (16, 9, 9)
    assert row.macs == 16 * 9 * 9 * 3 * 3 * (8 // 4)
    assert row.parameters == 16 * 2 * 3 * 3 + 16


def test_a_module_called_twice_counts_its_parameters_once_and_its_macs_twice():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(self.linear(x.flatten(1)))

    summary = summarize(Twice(), 1, [2, 2])
    assert [row.parameters for row in summary.rows[1:]] == [20, 0]
    assert summary.macs == 2 * 16
    assert summary.parameters == 20


@pytest.mark.parametrize("name", ["resnet18", "vgg16"])
def test_torchvision_totals_match_its_published_figures(name):
    # torchvision's model cards give parameters and "GFLOPS" that are in fact GMACs:
    # 1.81 for resnet18, 15.47 for vgg16 at 224x224.
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    with torch.device("meta"):
        model = getattr(torchvision.models, name)()
    summary = summarize(model, 3, 224)
    assert summary.parameters == meta["num_params"]
    assert summary.macs / 1e9 == pytest.approx(meta["_ops"], abs=0.005)
    assert summary.flops == 2 * summary.macs


def test_our_imagenet_resnet18_costs_what_torchvision_does():
    with torch.device("meta"):
        ours = ResNet("basic", [2, 2, 2, 2], 3, 1000, 224, stem="imagenet")
        reference = torchvision.models.resnet18()
    assert summarize(ours, 3, 224).macs == summarize(reference, 3, 224).macs


def test_depth_groups_rows_and_keeps_totals():
    model = ResNet("basic", [1, 1], 3, 10, 16, widths=[8, 16])
    leaves, blocks = summarize(model, 3, 16), summarize(model, 3, 16, max_depth=1)
    assert [row.name for row in blocks.rows] == [
        "input", "conv1", "bn1", "relu", "maxpool", "layer1", "layer2",
        "final_norm", "final_act", "avgpool", "fc",
    ]  # fmt: skip
    assert sum(r.macs for r in blocks.rows) == sum(r.macs for r in leaves.rows) == leaves.macs
    assert sum(r.parameters for r in blocks.rows) == leaves.parameters
    assert blocks.rows[6].field == leaves.rows[-5].field  # layer2's output: its last relu


def test_summary_leaves_the_weights_and_mode_alone():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model, 1, 5)
    assert model.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


def render(renderable) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()


def test_table_has_every_layer_and_the_totals():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    text = render(summary_table(summarize(model, 1, 5), title="tiny"))
    assert "tiny" in text and "Conv2d" in text and "2x3x3" in text
    # 2 x 3 x 3 outputs of 9 products: 162 MACs, 324 FLOPs.
    assert "162" in text and "324" in text and "FLOPs" in text


def test_summary_script_prints_the_table(capsys):
    summary_main(["model=resnet20", "data=digits", "--max-depth", "2"])
    out = capsys.readouterr().out
    assert "model=resnet20 data=digits" in out
    # ResNet-20 has 269,722 parameters on RGB; grey images take 2 x 16 x 3 x 3 fewer.
    assert "layer3.2" in out and "269,434" in out


def test_summary_script_reads_an_image_folder_for_what_the_network_takes(tmp_path, capsys):
    from PIL import Image

    for name in ("cat", "dog", "owl"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (20, 20), 60 * i).save(tmp_path / "photos" / name / f"{i}.png")
    root, cache = tmp_path / "photos", tmp_path / "cache"
    summary_main(["data=imagefolder", f"data.source.root={root}", f"paths.cache_dir={cache}"])
    out = capsys.readouterr().out
    # One grey channel of 32x32 (20 px brought into 32..224), three classes: the last layer.
    assert "for one 1x32x32 image" in out
    assert re.search(r"classifier\.0\s*│ Linear\s*│\s*3 │", out), out
    # Without a root: the default one (under paths.data_dir) is named, and how to give one.
    with pytest.raises(SystemExit, match=r"images does not exist; set data\.source\.root to a"):
        summary_main(["data=imagefolder", f"paths.cache_dir={cache}"])


def test_layer_summary_replaces_lightnings_summary_and_draws_on_rank_zero(capsys):
    trainer = L.Trainer(callbacks=[LayerSummary(max_depth=1)], logger=False)
    summaries = [c for c in trainer.callbacks if isinstance(c, ModelSummary)]
    assert len(summaries) == 1 and isinstance(summaries[0], LayerSummary)

    model = ResNet("basic", [1], 3, 4, 8, widths=[4])
    module = SimpleNamespace(model=model)
    LayerSummary(max_depth=1).on_fit_start(SimpleNamespace(is_global_zero=False), module)
    assert "layer1" not in capsys.readouterr().out
    LayerSummary(max_depth=1).on_fit_start(SimpleNamespace(is_global_zero=True), module)
    assert "layer1" in capsys.readouterr().out
