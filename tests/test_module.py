"""The LightningModule and the learning-rate schedules."""

import functools

import pytest
import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from convnet.models import VGG
from convnet.module import ImageClassifier, TrainingSums
from convnet.schedules import one_cycle, warmup_cosine


def _classifier(num_classes: int = 10, **kwargs) -> ImageClassifier:
    torch.manual_seed(0)
    model = VGG(
        [8, "M", 16, "M"],
        in_channels=3,
        num_classes=num_classes,
        image_size=8,
        batch_norm=True,
        dropout=0.0,
    )
    optimizer = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=5e-4)
    return ImageClassifier(model, optimizer, None, num_classes=num_classes, **kwargs)


def test_training_steps_lower_the_loss_on_a_fixed_batch() -> None:
    module = _classifier(label_smoothing=0.1)
    generator = torch.Generator().manual_seed(0)
    batch = (
        torch.randn(32, 3, 8, 8, generator=generator),
        torch.randint(0, 10, (32,), generator=generator),
    )
    optimizer = module.optimizer_factory(module._parameter_groups())
    losses = []
    for _ in range(30):
        loss = module.criterion(module(batch[0]), batch[1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]
    assert losses[-1] < 0.7 * losses[0]


def test_training_sums_give_torchmetrics_mean_loss_and_accuracy_to_the_bit() -> None:
    generator = torch.Generator().manual_seed(0)
    mean, accuracy = MeanMetric(), MulticlassAccuracy(10, average="micro")
    sums = TrainingSums()
    for size in [64, 64, 7, 64, 33]:  # a short last batch weighs by its images
        loss = torch.rand((), generator=generator) * 3
        logits = torch.randn(size, 10, generator=generator).to(torch.bfloat16)
        labels = torch.randint(0, 10, (size,), generator=generator)
        mean.update(loss)
        accuracy.update(logits, labels)
        sums.add(loss, logits, labels)
    loss_sum, correct = sums.totals(torch.device("cpu"))
    assert (sums.steps, sums.images) == (5, 232)
    assert loss_sum.dtype == torch.float32
    assert torch.equal(loss_sum / sums.steps, mean.compute())
    assert torch.equal(correct.float() / sums.images, accuracy.compute())
    sums.reset()
    assert sums.steps == sums.images == 0
    assert [int(t) for t in sums.totals(torch.device("cpu"))] == [0, 0]


def test_norm_and_bias_parameters_get_no_weight_decay() -> None:
    module = _classifier()
    decay, no_decay = module._parameter_groups()
    assert no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"])
    assert all(p.ndim <= 1 for p in no_decay["params"])
    total = sum(p.numel() for p in module.model.parameters())
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == total
    (everything,) = _classifier(exclude_norm_and_bias_from_weight_decay=False)._parameter_groups()
    assert len(everything["params"]) == len(list(module.model.parameters()))


def test_top5_accuracy_only_with_more_than_five_classes() -> None:
    assert _classifier(num_classes=10).val_acc_top5 is not None
    assert _classifier(num_classes=3).val_acc_top5 is None


def test_label_smoothing_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"module.label_smoothing=1.5"):
        _classifier(label_smoothing=1.5)


def _lrs(scheduler, optimizer, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_one_cycle_peaks_at_the_configured_lr_after_pct_start() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    lrs = _lrs(one_cycle(optimizer, total_steps=100, pct_start=0.25), optimizer, 100)
    assert max(lrs) == pytest.approx(0.4, rel=0.01)
    assert lrs.index(max(lrs)) in (24, 25)
    assert lrs[0] == pytest.approx(0.4 / 25)
    assert lrs[-1] < 1e-3


def test_one_cycle_matches_torchs_one_cycle_lr() -> None:
    from torch.optim.lr_scheduler import OneCycleLR

    ours = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    theirs = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    reference = OneCycleLR(
        theirs,
        max_lr=0.4,
        total_steps=100,
        pct_start=0.25,
        anneal_strategy="linear",
        cycle_momentum=False,
    )
    expected = _lrs(reference, theirs, 100)
    actual = _lrs(one_cycle(ours, total_steps=100, pct_start=0.25), ours, 100)
    assert actual == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_one_cycle_holds_the_final_lr_past_the_planned_steps() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    lrs = _lrs(one_cycle(optimizer, total_steps=10), optimizer, 15)
    assert lrs[10:] == pytest.approx([lrs[9]] * 5)


def test_warmup_cosine_rises_linearly_then_decays_to_the_floor() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine(
        optimizer, total_steps=110, warmup_fraction=10 / 110, min_lr_fraction=0.1
    )
    lrs = _lrs(scheduler, optimizer, 110)
    assert lrs[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-6)  # halfway through the cosine
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_test_time_flip_scores_the_mean_logits_of_image_and_mirror() -> None:
    images = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    plain, flipped = _classifier().eval(), _classifier(test_time_flip=True).eval()
    with torch.no_grad():
        expected = (plain.model(images) + plain.model(torch.flip(images, dims=[3]))) / 2
        assert torch.allclose(flipped.evaluation_logits(images), expected, atol=1e-6)
        assert torch.equal(plain.evaluation_logits(images), plain.model(images))
        assert not torch.allclose(plain.evaluation_logits(images), expected)


@pytest.mark.parametrize(("fused", "expected"), [(None, True), (False, False), (True, True)])
def test_the_optimizer_is_fused_unless_the_config_says_otherwise(fused, expected) -> None:
    module = _classifier()
    module.optimizer_factory = functools.partial(torch.optim.SGD, lr=0.1, fused=fused)
    assert bool(module.build_optimizer().defaults["fused"]) is expected
    # An optimizer without a fused kernel is built as it is.
    module.optimizer_factory = functools.partial(torch.optim.RMSprop, lr=0.1)
    assert isinstance(module.build_optimizer(), torch.optim.RMSprop)
