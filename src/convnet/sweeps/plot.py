"""A sweep's metric against each swept parameter, one panel per parameter, as a PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from convnet.sweeps.summary import Job, SweepSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PANELS_PER_ROW = 4


def _numbers(values: list[str]) -> list[float] | None:
    try:
        return [float(value) for value in values]
    except ValueError:
        return None


def _panel(axes: Axes, key: str, summary: SweepSummary, best: Job | None) -> None:
    jobs = summary.jobs
    labels = [job.overrides.get(key, "") for job in jobs]
    numbers = _numbers(labels)
    if numbers is None:  # categories: one position per value, in order of appearance
        categories = list(dict.fromkeys(labels))
        positions = [float(categories.index(label)) for label in labels]
        axes.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        axes.set_xlim(-0.5, len(categories) - 0.5)
    else:
        positions = numbers
        finite = [n for n in numbers if math.isfinite(n)]
        if finite and min(finite) > 0 and max(finite) / min(finite) >= 20:
            axes.set_xscale("log")
        elif all(label.lstrip("+-").isdigit() for label in labels):
            # Integers (seed, epochs, widths): no ticks between them.
            from matplotlib.ticker import MaxNLocator

            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    scored = [
        (x, job.value) for x, job in zip(positions, jobs, strict=True) if job.value is not None
    ]
    if scored:
        axes.scatter(*zip(*scored, strict=True), s=24, alpha=0.8, label="job")
    failed = [x for x, job in zip(positions, jobs, strict=True) if job.value is None]
    if failed:
        # Along the bottom edge: where in the range the failures were.
        axes.scatter(
            failed,
            [0.03] * len(failed),
            transform=axes.get_xaxis_transform(),
            marker="x",
            color="tab:red",
            label="failed",
        )
    if best is not None and best.value is not None:
        x = positions[jobs.index(best)]
        axes.scatter([x], [best.value], marker="*", s=160, color="tab:orange", label="best")
    axes.set_xlabel(key)
    axes.set_ylabel(summary.metric or "metric")
    axes.grid(alpha=0.3)


def plot_summary(summary: SweepSummary, path: Path) -> Path | None:
    """Write the metric of every job against each swept parameter to `path` (PNG); return
    the path, or None when nothing was swept."""
    # matplotlib's object API (no pyplot): no global figure state, no display needed.
    from matplotlib.figure import Figure

    keys = summary.params or summary.repeat_keys
    if not keys:
        return None
    columns = min(len(keys), PANELS_PER_ROW)
    rows = math.ceil(len(keys) / columns)
    figure = Figure(figsize=(3.6 * columns, 3.2 * rows), layout="constrained")
    best_setting = summary.settings[0]
    scored = [job for job in best_setting.jobs if job.value is not None]
    sign = 1.0 if summary.direction == "maximize" else -1.0
    best = max(scored, key=lambda job: sign * job.value) if scored else None  # type: ignore[operator]
    for index, key in enumerate(keys):
        _panel(figure.add_subplot(rows, columns, index + 1), key, summary, best)
    figure.axes[0].legend(fontsize="small")
    figure.suptitle(f"{summary.sweep_dir.name}: {summary.metric} ({summary.direction})")
    figure.savefig(path, dpi=100)
    return path
