"""Benchmarks of training, side by side in one process (scripts/benchmark.py).

Throughput of convnet's training against a hand-written loop and the model alone
(convnet.throughput), over batch and image sizes, and the cost of the picture callbacks
on whole runs. Arms of a benchmark
are interleaved (A, B, A, B, ...) so that a machine that is busier in one period than
another weighs on both, and each arm is judged by its fastest run: on a shared machine
other work only ever slows a run down.
"""

from __future__ import annotations

import datetime
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
from omegaconf import DictConfig
from rich.table import Table

from convnet.arms import ARMS, DESCRIPTIONS, LETTERS, Throughput
from convnet.compose import compose_config
from convnet.throughput import ThroughputBenchmark
from convnet.train import train

log = logging.getLogger(__name__)

# The callbacks of configs/callbacks/default.yaml that draw pictures, or measure the
# network for its charts (filter health): what `--callbacks` times.
VISUAL_CALLBACKS = (
    "filters",
    "feature_maps",
    "filter_response",
    "gradcam",
    "mistakes",
    "filter_health",
    "histograms",
    "embeddings",
    "hparams",
)
# The ratios the throughput benchmark reports: convnet against the device's best ceiling
# (b/c), the fp32 ceiling (b/c32: what a 32-true run can reach), convnet forced to fp32
# (b/b32: what the default precision gains), the hand-written loop (b/a), and the compiled
# model against the eager one (d/c).
RATIOS = (
    ("convnet", "model"),
    ("convnet", "model_fp32"),
    ("convnet", "convnet_fp32"),
    ("convnet", "plain"),
    ("convnet", "lightning"),
    ("lightning", "model"),
    ("compiled", "model"),
)
# Display only, and the same in every arm: no bar (neither convnet's nor the one Lightning
# adds in its place), so the log stays readable.
QUIET = ("++callbacks.rich_progress_bar=null", "++trainer.enable_progress_bar=false")


def compose_run(overrides: Sequence[str], output_dir: Path) -> DictConfig:
    """Return the train config scripts/train.py would run with `overrides`, in output_dir."""
    return compose_config("train", overrides, output_dir)


class FitTimer(L.Callback):
    """Measures the fit (not data loading or testing) and what each callback spent."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.callback_seconds: dict[str, float] = {}
        self._start = 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds = time.perf_counter() - self._start
        for callback in trainer.callbacks:
            if isinstance(getattr(callback, "seconds", None), float) and callback is not self:
                self.callback_seconds[type(callback).__name__] = callback.seconds


@dataclass
class Arm:
    """One configuration of a benchmark and the fit times of its runs."""

    name: str
    overrides: list[str]
    seconds: list[float] = field(default_factory=list)
    callback_seconds: list[dict[str, float]] = field(default_factory=list)

    def fastest(self) -> float:
        """Return the fastest fit time in seconds."""
        return min(self.seconds)


def run_arms(arms: Sequence[Arm], repeats: int, output_dir: Path) -> None:
    """Fit every arm `repeats` times, interleaved, recording times in the arms."""
    for repeat in range(repeats):
        for arm in arms:
            cfg = compose_run([*arm.overrides, "test=false"], output_dir / f"{arm.name}-{repeat}")
            timer = FitTimer()
            train(cfg, callbacks=[timer])
            arm.seconds.append(timer.seconds)
            arm.callback_seconds.append(timer.callback_seconds)
            log.info("%s run %d: fit %.1f s", arm.name, repeat + 1, timer.seconds)


def callbacks_overhead(
    repeats: int = 1, overrides: Sequence[str] = (), output_dir: Path | None = None
) -> Table:
    """Return a table of the default run's fit time with and without the TensorBoard
    picture callbacks, their ratio, and the time each picture callback spent (measured
    around its own work, so other load on the machine barely touches it)."""
    output_dir = output_dir or _output_dir("callbacks")
    without = [f"callbacks.{name}=null" for name in VISUAL_CALLBACKS]
    arms = [
        Arm("without", [*QUIET, *overrides, *without]),
        Arm("with", [*QUIET, *overrides]),
    ]
    run_arms(arms, repeats, output_dir)
    base, visual = arms
    table = Table(title=f"callbacks overhead: {' '.join(overrides) or 'default run'}")
    table.add_column("arm")
    table.add_column("fit seconds (each run)", justify="right")
    table.add_column("fastest", justify="right")
    table.add_column("ratio to without", justify="right")
    for arm in arms:
        runs = ", ".join(f"{s:.1f}" for s in arm.seconds)
        ratio = arm.fastest() / base.fastest()
        table.add_row(arm.name, runs, f"{arm.fastest():.1f}", f"{ratio:.3f}")
    # Seconds each callback spent, median over the runs with them.
    spent = {name: statistics.median(run.get(name, 0.0) for run in visual.callback_seconds)
             for name in visual.callback_seconds[0]}  # fmt: skip
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        table.add_row(f"  {name}", f"{seconds:.2f}", "", f"{seconds / base.fastest():.3f}")
    total = sum(spent.values())
    table.add_row("  all pictures", f"{total:.2f}", "", f"{total / base.fastest():.3f}")
    return table


def _output_dir(name: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    # Where runs go: outputs/ of the directory the command runs in.
    return Path.cwd() / "outputs" / "benchmark" / f"{stamp}_{name}"


def throughput(
    overrides: Sequence[str] = (),
    repeats: int = 3,
    warmup: int = 5,
    steps: int = 20,
    arms: Sequence[str] = ARMS,
    loader_workers: int | None = None,
    output_dir: Path | None = None,
) -> Throughput:
    """Return the throughput of the arms (convnet.throughput) for the run `overrides`."""
    output_dir = output_dir or _output_dir("throughput")
    # (b) runs as scripts/train.py does, progress bar included.
    cfg = compose_run(overrides, output_dir / "config")
    benchmark = ThroughputBenchmark(
        cfg, compose_run, overrides, output_dir, warmup, steps, loader_workers
    )
    return benchmark.run(arms, repeats)


def throughput_table(result: Throughput, title: str) -> Table:
    """Return a table of the arms' img/s, peak memory and achieved FLOP rate."""
    table = Table(
        title=title,
        caption=(
            "(a) a hand-written PyTorch loop over a torchvision DataLoader, (b) convnet's "
            "training through Lightning, both in the run's precision, (b32) (b) in 32-true; "
            "(l) the model's step in a minimal LightningModule, in the run's precision; "
            "(c) the model alone on "
            "one batch on the device in the device's best precision, (c32) in fp32, (d) "
            f"compiled. {result.device}, run in {result.precision}, batch "
            f"{result.batch_size}, images "
            f"{result.image_size[0]}x{result.image_size[1]}, "
            f"{result.flops_per_image / 1e9:.3f} GFLOP per training image (forward + "
            f"backward, torch.utils.flop_counter); (a) loads with {result.loader_workers} "
            f"DataLoader workers; best of {result.repeats} repeats; peak memory is "
            f"{result.memory_kind}"
        ),
    )
    table.add_column("arm", no_wrap=True)
    table.add_column("in", no_wrap=True)
    for column in ("img/s each", "best img/s", "ms/step", "peak MiB", "TFLOP/s", "to (c)"):
        table.add_column(column, justify="right")
    for arm, measured in result.results.items():
        best = measured.best()
        ratio = result.ratio(arm, "model")
        table.add_row(
            f"({LETTERS[arm]}) {DESCRIPTIONS[arm]}",
            measured.setting,
            ", ".join(f"{v:.0f}" for v in measured.images_per_second),
            f"{best:.1f}",
            f"{1000 * result.batch_size / best:.1f}",
            f"{measured.peak_memory_mib:.0f}",
            f"{best * result.flops_per_image / 1e12:.3f}",
            "" if ratio is None else f"{ratio:.2f}",
        )
    return table


def ratio_lines(result: Throughput) -> list[str]:
    """Return `b/c = 0.97`, `b/a = 2.10`... for the ratios whose arms ran; from 3 repeats
    on, each with the ratio of the median repeats, `b/c = 0.90 (medians 1.04)`.

    The best repeats give each arm's speed with the least interference, but on a shared
    machine one lucky window moves them (2 shared EPYC cores, the default model at batch 32,
    9 repeats: (c) from 1879 to 2699 img/s); when the two figures disagree, the machine was
    too noisy for either to be read to better than their difference.
    """
    lines = []
    for numerator, denominator in RATIOS:
        ratio = result.ratio(numerator, denominator)
        if ratio is None:
            continue
        line = f"{LETTERS[numerator]}/{LETTERS[denominator]} = {ratio:.2f}"
        if result.repeats >= 3:
            line += f" (medians {result.ratio(numerator, denominator, median=True):.2f})"
        lines.append(line)
    return lines


def sweep(
    batch_sizes: Sequence[int],
    image_sizes: Sequence[int],
    overrides: Sequence[str] = (),
    models: Sequence[str] = (),
    **options: object,
) -> Table:
    """Return a table of throughput over models (the run's own if none), batch sizes and
    image sizes (square)."""
    output_dir = _output_dir("sweep")
    rows = []
    for model in models or [None]:
        chosen = [f"model={model}"] if model else []
        for batch_size in batch_sizes:
            for size in image_sizes:
                setting = [
                    *chosen,
                    f"data.batch_size={batch_size}",
                    f"data.image_size=[{size},{size}]",
                ]
                name = f"{model or 'run'}-b{batch_size}-{size}"
                result = throughput([*overrides, *setting], output_dir=output_dir / name, **options)
                rows.append((model, batch_size, size, result))
    first = rows[0][3]
    arms = list(first.results)
    table = Table(
        title=f"throughput sweep: {' '.join(overrides) or 'default run'}",
        caption=(
            f"{first.device}, run in {first.precision}, (c) in the device's best precision; "
            "best img/s of each arm; peak memory is "
            f"{first.memory_kind}"
        ),
    )
    columns = [
        *(["model"] if models else []),
        "batch",
        "image",
        *(f"({LETTERS[a]}) img/s" for a in arms),
        "GFLOP/image",
        "TFLOP/s (best arm)",
        "peak MiB",
        *(f"{LETTERS[n]}/{LETTERS[d]}" for n, d in RATIOS),
    ]
    for column in columns:
        table.add_column(column, justify="right")
    for model, batch_size, size, result in rows:
        best = max(r.best() for r in result.results.values())
        peak = max(r.peak_memory_mib for r in result.results.values())
        ratios = [result.ratio(numerator, denominator) for numerator, denominator in RATIOS]
        table.add_row(
            *([model] if models else []),
            str(batch_size),
            f"{size}x{size}",
            *(f"{result.results[arm].best():.1f}" if arm in result.results else "" for arm in arms),
            f"{result.flops_per_image / 1e9:.3f}",
            f"{best * result.flops_per_image / 1e12:.3f}",
            f"{peak:.0f}",
            *("" if r is None else f"{r:.2f}" for r in ratios),
        )
    return table
