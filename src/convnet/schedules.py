"""Learning-rate schedules, stepped once per optimizer step (not per epoch)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR


def one_cycle(
    optimizer: Optimizer,
    total_steps: int,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal_strategy: str = "linear",
) -> LRScheduler:
    """Return Smith's one-cycle schedule peaking at each group's configured lr."""
    _check_fraction("scheduler.pct_start", pct_start)
    peak = [group["lr"] for group in optimizer.param_groups]
    return OneCycleLR(
        optimizer,
        max_lr=peak,
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        anneal_strategy=anneal_strategy,
        # Momentum cycling fights Nesterov SGD's fixed momentum and AdamW's betas.
        cycle_momentum=False,
    )


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    min_lr_fraction: float = 0.0,
) -> LRScheduler:
    """Return a linear warm-up from 0 to lr over `warmup_fraction` of the steps, then a
    cosine decay to `min_lr_fraction * lr`."""
    _check_fraction("scheduler.warmup_fraction", warmup_fraction)
    _check_fraction("scheduler.min_lr_fraction", min_lr_fraction)
    warmup = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_fraction + (1 - min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def _check_fraction(key: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{key}={value} must be in [0, 1)")
