"""Memory use over a run: host RSS (and CUDA memory) at the end of every training epoch.

A line that keeps rising under `memory/` in TensorBoard over a long run is a leak (tensors
kept in lists, hooks never removed) long before the process runs out of memory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning as L
import torch

MIB = 2**20
STATM = Path("/proc/self/statm")


def host_rss_mib() -> float | None:
    """Return the resident memory of this process in MiB (its peak where /proc is missing,
    e.g. macOS), or None where neither can be read (Windows)."""
    try:
        # Linux: the second field is the resident size in pages.
        resident_pages = int(STATM.read_text().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, else KiB


def memory_metrics(device: torch.device) -> dict[str, float]:
    """Return `memory/host_rss_mib` and, on a CUDA `device`, `memory/cuda_allocated_mib` and
    `memory/cuda_max_allocated_mib` (the peak since the process started)."""
    metrics = {}
    rss = host_rss_mib()
    if rss is not None:
        metrics["memory/host_rss_mib"] = rss
    if device.type == "cuda":
        metrics["memory/cuda_allocated_mib"] = torch.cuda.memory_allocated(device) / MIB
        metrics["memory/cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / MIB
    return metrics


class MemoryMonitor(L.Callback):
    """Logs the memory metrics of `memory_metrics` once per training epoch, at its end.

    They go to the loggers only, not to the run's metrics (result.json, sweep summaries),
    at the step of the epoch's other end-of-epoch metrics.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = memory_metrics(pl_module.device)
        # Lightning logs epoch-end metrics one step before the next epoch's first step.
        step = max(trainer.global_step - 1, 0)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
