"""The custom scalars layout, read back through TensorBoard's own reader and plugin."""

import re

import pytest
from tensorboard.plugins.custom_scalar import layout_pb2, metadata

from convnet.callbacks.scalar_layout import ScalarLayout
from convnet.compose import compose_config
from tests.callbacks.conftest import read_events


def written_layout(tmp_path, fake_trainer, small_vgg, charts) -> layout_pb2.Layout:
    trainer, pl_module = fake_trainer(small_vgg)
    ScalarLayout(charts).on_train_start(trainer, pl_module)
    trainer.loggers[0].finalize("success")
    events = read_events(tmp_path / "tb")
    (tensor,) = events.Tensors(metadata.CONFIG_SUMMARY_TAG)
    return layout_pb2.Layout.FromString(tensor.tensor_proto.string_val[0])


def test_the_default_layout_puts_train_and_val_and_every_stage_on_one_chart(
    tmp_path, fake_trainer, small_vgg
) -> None:
    charts = compose_config("train", []).callbacks.scalar_layout.charts
    layout = written_layout(tmp_path, fake_trainer, small_vgg, charts)
    by_title = {
        chart.title: list(chart.multiline.tag) for c in layout.category for chart in c.chart
    }
    logged = [
        "train/loss", "val/loss", "train/acc", "val/acc", "val/acc_best", "val/acc_top5",
        "health/stage1/dead_channels", "health/stage12/dead_channels",
        "health/stage1/filter_norm_spread", "memory/host_rss_mib",
    ]  # fmt: skip

    def shown(title_start: str) -> list[str]:
        (patterns,) = [p for title, p in by_title.items() if title.startswith(title_start)]
        return [tag for tag in logged if any(re.search(p, tag) for p in patterns)]

    assert shown("loss") == ["train/loss", "val/loss"]
    assert shown("accuracy") == ["train/acc", "val/acc", "val/acc_best"]
    assert shown("dead channels") == [
        "health/stage1/dead_channels",
        "health/stage12/dead_channels",
    ]
    assert shown("filter norm spread") == ["health/stage1/filter_norm_spread"]


def test_a_chart_given_one_string_instead_of_a_list_is_refused() -> None:
    with pytest.raises(ValueError, match=r"charts\.a\.loss='\^train/loss\$': give a list"):
        ScalarLayout({"a": {"loss": "^train/loss$"}})
