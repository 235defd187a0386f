"""The benchmark's ratio lines, from figures made up here (no arm runs)."""

from __future__ import annotations

from convnet.arms import ArmResult, Throughput
from convnet.benchmarks import ratio_lines


def _result(speeds: dict[str, list[float]]) -> Throughput:
    repeats = len(next(iter(speeds.values())))
    return Throughput(
        results={arm: ArmResult(arm, "bf16 NHWC", list(s)) for arm, s in speeds.items()},
        flops_per_image=1.0,
        batch_size=32,
        image_size=(32, 32),
        device="CPU",
        precision="bf16-mixed",
        memory_kind="host RSS",
        loader_workers=0,
        repeats=repeats,
    )


def test_ratios_are_of_the_best_repeats_and_from_three_repeats_also_of_the_medians() -> None:
    # (c) had one lucky window: its best is far above its median, (b)'s is not.
    result = _result({"convnet": [90.0, 100.0, 95.0, 97.0], "model": [80.0, 125.0, 90.0, 100.0]})
    assert result.ratio("convnet", "model") == 100.0 / 125.0
    # Medians of an even count are the mean of the middle two: 96 and 95.
    assert result.ratio("convnet", "model", median=True) == 96.0 / 95.0
    assert ratio_lines(result) == ["b/c = 0.80 (medians 1.01)"]


def test_fewer_than_three_repeats_give_the_best_ratio_alone() -> None:
    result = _result({"convnet": [90.0, 100.0], "model": [110.0, 100.0], "lightning": [99.0, 95.0]})
    assert ratio_lines(result) == ["b/c = 0.91", "b/l = 1.01", "l/c = 0.90"]
