"""Launcher configs: parallel local jobs (joblib) and SLURM through submitit, without a cluster."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import submitit
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_only

from tests.compose import compose_config

SLURM_SWEEP = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=gpu",
    "hydra.launcher.timeout_min=90",
    "trainer=ddp",
    "trainer.devices=4",
    "+trainer.num_nodes=2",
]


def test_the_parallel_launcher_is_joblibs_with_two_jobs(tmp_path: Path) -> None:
    launcher = compose_config("train", ["hydra/launcher=parallel"], tmp_path).hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher")
    assert launcher.n_jobs == 2


def test_the_slurm_launcher_submits_one_task_per_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose_config("train", SLURM_SWEEP, tmp_path)
    launcher = instantiate(cfg.hydra.launcher)
    expected = {"partition": "gpu", "timeout_min": 90, "nodes": 2}
    expected |= {"gpus_per_node": 4, "tasks_per_node": 4, "cpus_per_task": 8, "mem_gb": 64}
    assert {key: launcher.params[key] for key in expected} == expected

    # The sbatch script submitit would submit: submitit only needs to find an srun.
    fake_srun = tmp_path / "bin" / "srun"
    fake_srun.parent.mkdir()
    fake_srun.write_text("#!/bin/sh\nexit 1\n")
    fake_srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_srun.parent}{os.pathsep}{os.environ['PATH']}")
    scripts = []

    def write_script_only(executor: submitit.AutoExecutor, *args: object) -> list:
        scripts.append(executor._executor._make_submission_file_text("python -u job.py", "0"))
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", write_script_only)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0)
    (script,) = scripts
    for line in [
        "--partition=gpu",
        "--time=90",
        "--nodes=2",
        "--gpus-per-node=4",
        "--ntasks-per-node=4",
        "--cpus-per-task=8",
        "--mem=64GB",
    ]:
        assert f"#SBATCH {line}\n" in script
    assert "\nsrun " in script  # every task runs the job: Lightning makes them DDP ranks


def test_lightning_runs_ddp_over_the_slurm_tasks_the_launcher_asks_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose_config("train", SLURM_SWEEP, tmp_path)
    params = instantiate(cfg.hydra.launcher).params
    tasks = params["nodes"] * params["tasks_per_node"]
    # What srun sets for the second task of the second node.
    slurm = {"SLURM_NTASKS": tasks, "SLURM_NTASKS_PER_NODE": params["tasks_per_node"]}
    slurm |= {"SLURM_PROCID": 5, "SLURM_LOCALID": 1, "SLURM_NODEID": 1, "SLURM_JOB_ID": 42}
    slurm |= {"SLURM_JOB_NAME": "train", "SLURM_NODELIST": "node[1-2]"}
    for name, value in slurm.items():
        monkeypatch.setenv(name, str(value))
    # The Trainer makes this process rank 5 for every rank_zero_only function: undone after.
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    trainer = L.Trainer(
        accelerator="cpu",  # the same ranks as on GPUs, without them
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy,
        logger=False,
        enable_checkpointing=False,
    )
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    ranks = (trainer.global_rank, trainer.world_size, trainer.local_rank, trainer.node_rank)
    assert ranks == (5, 8, 1, 1)
