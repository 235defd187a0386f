"""The host allocator on the CPU: memory a step frees is reused, not faulted back in.

The page faults are counted by the kernel (getrusage's ru_minflt), in fresh processes,
since the setting holds for the whole process.
"""

from pathlib import Path

import pytest

from convnet import build as train_module
from convnet.host_memory import glibc_version
from tests.scripts import run_script

glibc_only = pytest.mark.skipif(glibc_version() is None, reason="mallopt is glibc's")

# 30 steps that each allocate and free 64 MiB, as a training step does its activations.
STEPS = """
import resource, sys, torch
from convnet.host_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for _ in range(30):
    block = torch.ones(2**24); del block
print(faults() - before)
"""
PAGES = 30 * 64 * 2**20 // 4096


def _faults(mode: str) -> int:
    done = run_script(["-c", STEPS, mode], cwd=Path.cwd(), check=True)
    return int(done.stdout.split()[-1])


@glibc_only
def test_freed_memory_is_reused_without_page_faults() -> None:
    # glibc's default unmaps each 64 MiB block on free: every page of every step faults.
    assert _faults("default") > 0.9 * PAGES
    # Kept, a block is reused once the heap has grown enough free room around it (a few
    # steps: a 64-byte-aligned block needs a little more than the block freed before it);
    # from then on no step faults.
    assert _faults("keep") < 0.5 * PAGES


@pytest.mark.parametrize(
    ("overrides", "kept"),
    [([], True), (["keep_host_memory=false"], False), (["trainer.accelerator=cpu"], True)],
)
def test_training_on_the_cpu_keeps_host_memory_unless_told_not_to(
    overrides: list[str], kept: bool, train_config, monkeypatch
) -> None:
    calls = []
    monkeypatch.setattr(train_module, "keep_freed_memory", lambda: calls.append(1))
    train_module.prepare_host_memory(train_config(*overrides))
    assert bool(calls) is kept
