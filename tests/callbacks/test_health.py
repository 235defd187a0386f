"""Filter health: dead channels and filter-norm spread per stage, read back by TensorBoard."""

import torch

from convnet.callbacks.health import (
    FilterHealth,
    dead_share,
    filter_norm_spread,
    stage_health,
)
from tests.callbacks.conftest import read_events


def test_a_channel_is_dead_only_when_it_never_fires() -> None:
    outputs = torch.zeros(2, 4, 3, 3)
    outputs[1, 0, 2, 2] = 0.1  # fires once, on one image: alive
    outputs[:, 1] = 1.0
    outputs[:, 2] = -1.0  # below zero everywhere (a leaky activation): dead
    assert dead_share(outputs) == 0.5  # channels 2 and 3


def test_the_norm_spread_is_the_coefficient_of_variation_of_filter_norms() -> None:
    conv = torch.nn.Conv2d(2, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 2.0]]).view(3, 2, 1, 1))
    norms = torch.tensor([5.0, 1.0, 2.0])  # by hand: |(3, 4)| = 5
    expected = float(norms.std(unbiased=False) / norms.mean())
    assert abs(filter_norm_spread(conv) - expected) < 1e-6


def test_a_stage_whose_convs_are_switched_off_is_all_dead(small_vgg, context) -> None:
    with torch.no_grad():  # stage2's conv gives -1 everywhere: its ReLU never fires
        small_vgg.features[3].weight.zero_()
        small_vgg.features[3].bias.fill_(-1.0)
    samples = context.samples(per_class=2, seed=0)
    healths = stage_health(context, samples.inputs)
    assert [h.stage.name for h in healths] == ["stage1", "stage2", "stage3"]
    assert [h.channels for h in healths] == [8, 16, 16]
    assert healths[1].dead == 1.0
    assert healths[0].dead < 1.0


def test_the_scalars_of_every_stage_are_logged_at_the_start_and_each_epoch(
    small_vgg, fake_trainer, tmp_path
) -> None:
    callback = FilterHealth(per_class=2)
    trainer, pl_module = fake_trainer(small_vgg)
    callback.on_train_start(trainer, pl_module)
    trainer.global_step, trainer.current_epoch = 8, 0
    callback.on_train_epoch_end(trainer, pl_module)
    for logger in trainer.loggers:
        logger.finalize("success")
    events = read_events(tmp_path / "tb")
    expected = {
        f"health/stage{n}/{measure}"
        for n in (1, 2, 3)
        for measure in ("dead_channels", "filter_norm_spread")
    }
    assert set(events.Tags()["scalars"]) >= expected
    for tag in expected:
        values = events.Scalars(tag)
        assert [v.step for v in values] == [0, 7], tag
        assert all(v.value >= 0 for v in values), tag
    assert small_vgg.training  # measured in eval mode, left in train mode


def test_the_layer_table_shows_each_stage_and_its_health_on_its_output_row(
    small_vgg, fake_trainer
) -> None:
    from rich.console import Console

    from convnet.callbacks.model_summary import stage_columns
    from convnet.summary import summarize, summary_table

    with torch.no_grad():
        small_vgg.features[3].weight.zero_()
        small_vgg.features[3].bias.fill_(-1.0)
    trainer, _ = fake_trainer(small_vgg)
    columns = stage_columns(small_vgg, trainer, "cpu")
    table = summary_table(summarize(small_vgg, 3, 32, max_depth=2), stages=columns)
    console = Console(width=200, record=True)
    console.print(table)
    lines = [line for line in console.export_text().splitlines() if line.count("│") > 2]
    rows = {line.split("│")[1].strip(): line for line in lines}
    assert "stage2" in rows["features.4"] and "100%" in rows["features.4"]
    assert "stage1" in rows["features.1"] and "stage3" in rows["features.7"]
    assert "stage" not in rows["features.3"]
