"""Train a classifier: `convnet train model=vgg16 data=cifar10` (or `python scripts/train.py`)."""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from convnet import keys
from convnet.cli.app import hydra_command
from convnet.cli.quiet import lightning_logs_once
from convnet.config import validate
from convnet.console import config_tree, show
from convnet.errors import one_line_errors


@hydra_command("train")
def main(cfg: DictConfig) -> float | None:
    """Train (and test) a classifier; return the metric a sweeper optimizes."""
    # A user's mistake (config, checkpoint, data, disk) is shown as one line.
    with one_line_errors():
        show(config_tree(cfg))
        # A bad value fails here, before torch and Lightning are imported (seconds).
        validate(cfg)
        from convnet.resume import FINISHED, FRESH, Resume, continued_job, continues_runs
        from convnet.run_lock import hold_run_folder
        from convnet.sweeps.results import JobRecorder, kept_result
        from convnet.train import train

        lightning_logs_once()

        # Held before result.json or the checkpoint is touched: another process training
        # in this folder (a resume of a run still going) stops this one at once.
        with hold_run_folder(Path(cfg.paths.output_dir)):
            resume, read = None, None
            if HydraConfig.get().mode == RunMode.RUN:
                # A checkpoint that cannot be resumed fails before result.json is written over.
                resume = Resume.from_config(cfg)
            elif continues_runs(cfg.get(keys.CKPT_PATH)):
                # A sweep continued with ckpt_path=last: its jobs that finished keep their
                # folders and results, those that never checkpointed start from scratch.
                job, read = continued_job(cfg)
                if job == FINISHED:
                    return kept_result(Path(cfg.paths.output_dir))
                if job == FRESH:
                    # Step 0 on: TensorBoard and the CSV table set aside what an earlier
                    # attempt of the job logged.
                    resume = Resume(None, Path(cfg.paths.output_dir), None, 0)
            # Writes <run>/result.json for sweep summaries; in a sweep, a failed run is
            # recorded and returns NaN instead of stopping the sweep.
            recorder = JobRecorder.for_run(cfg)

            def run() -> dict[str, float]:
                # A sweep job's checkpoint (read once) is checked inside the recorder: one
                # that cannot be resumed is that job's failure, and the sweep goes on.
                made = resume if resume is not None else Resume.from_config(cfg, read)
                return train(cfg, callbacks=[recorder], resume=made)

            return recorder.run(run)


if __name__ == "__main__":  # python -m convnet.cli.train (as DDP starts its ranks)
    main()
