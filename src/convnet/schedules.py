"""Learning-rate schedules, stepped once per optimizer step (not per epoch)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from convnet.checks import choose, fraction

# Progress in [0, 1] -> fraction of the way from the peak to the final lr.
ANNEALING = {
    "linear": lambda progress: progress,
    "cos": lambda progress: (1 - math.cos(math.pi * progress)) / 2,
}


def one_cycle(
    optimizer: Optimizer,
    total_steps: int,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal_strategy: str = "linear",
) -> LRScheduler:
    """Return Smith's one-cycle schedule: from lr / div_factor up to each group's lr over
    `pct_start` of the steps, then down to lr / (div_factor * final_div_factor).

    The same curve as torch's OneCycleLR, as a LambdaLR: its saved state is only the step,
    so a run resumed with more epochs stretches the schedule instead of failing with
    "Tried to step N times".
    """
    pct_start = fraction(pct_start, "scheduler.pct_start")
    anneal = choose(ANNEALING, "scheduler.anneal_strategy", anneal_strategy)
    start, end = 1 / div_factor, 1 / (div_factor * final_div_factor)
    peak_step = max(1.0, pct_start * total_steps - 1)  # as torch.optim OneCycleLR

    def factor(step: int) -> float:
        if step <= peak_step:
            return start + (1 - start) * step / peak_step
        progress = min(1.0, (step - peak_step) / max(1.0, total_steps - 1 - peak_step))
        return 1 + (end - 1) * anneal(progress)

    return LambdaLR(optimizer, factor)


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    min_lr_fraction: float = 0.0,
) -> LRScheduler:
    """Return a linear warm-up from 0 to lr over `warmup_fraction` of the steps, then a
    cosine decay to `min_lr_fraction * lr`."""
    warmup_fraction = fraction(warmup_fraction, "scheduler.warmup_fraction")
    min_lr_fraction = fraction(min_lr_fraction, "scheduler.min_lr_fraction")
    warmup = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_fraction + (1 - min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
