"""Memory use in TensorBoard: the host RSS the kernel reports, once per epoch."""

import sys
from pathlib import Path

import pytest

from convnet.callbacks import MemoryMonitor
from convnet.callbacks import memory as memory_module
from convnet.callbacks.memory import host_rss_mib
from tests.callbacks.conftest import read_events
from tests.scripts import run_script

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")


def _vm_rss_mib() -> float:
    """The kernel's own figure, from another file than the one the callback reads."""
    (line,) = [x for x in Path("/proc/self/status").read_text().splitlines() if "VmRSS" in x]
    return int(line.split()[1]) / 1024  # kB


GROWTH = """
import torch
from convnet.callbacks.memory import host_rss_mib
before = host_rss_mib()
block = torch.ones(64 * 2**20 // 4)  # 64 MiB, written so that it is resident
print(host_rss_mib() - before)
"""


@linux_only
def test_host_rss_is_what_the_kernel_reports_and_grows_with_an_allocation(tmp_path: Path) -> None:
    assert host_rss_mib() == pytest.approx(_vm_rss_mib(), abs=8)
    # In a new process: this one may hold freed memory that a new block reuses
    # (convnet.host_memory), so that its RSS does not grow.
    done = run_script(["-c", GROWTH], cwd=tmp_path, check=True)
    assert 56 < float(done.stdout.split()[-1]) < 72


@linux_only
def test_monitor_logs_the_rss_once_at_the_step_of_the_epoch_end_metrics(
    fake_trainer, small_vgg, tmp_path: Path
) -> None:
    trainer, module = fake_trainer(small_vgg, step=128, epoch=0)
    MemoryMonitor().on_train_epoch_end(trainer, module)
    trainer.loggers[0].experiment.flush()
    events = read_events(tmp_path / "tb")
    assert sorted(events.Tags()["scalars"]) == ["memory/host_rss_mib"]  # no CUDA on the CPU
    (logged,) = events.Scalars("memory/host_rss_mib")
    assert logged.step == 127  # where Lightning logs the epoch's val/ and train/ metrics
    assert logged.value == pytest.approx(_vm_rss_mib(), abs=8)


def test_without_proc_the_rss_is_the_peak_from_getrusage(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    resource = pytest.importorskip("resource")
    monkeypatch.setattr(memory_module, "STATM", tmp_path / "no-proc")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    expected = peak / 2**20 if sys.platform == "darwin" else peak / 1024
    assert host_rss_mib() == pytest.approx(expected, rel=0.01)
