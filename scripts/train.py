"""Train a classifier: `python scripts/train.py model=vgg16 data=cifar10`."""

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from convnet.console import config_tree, show
from convnet.errors import one_line_errors
from convnet.runs import register_resolvers
from convnet.sweeps.results import JobRecorder
from convnet.train import resume_checkpoint, train

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # A user's mistake (config, checkpoint, data, disk) is shown as one line.
    with one_line_errors():
        show(config_tree(cfg))
        resume = None
        if HydraConfig.get().mode == RunMode.RUN:
            # A checkpoint that cannot be resumed fails before result.json is written over.
            resume = resume_checkpoint(cfg)
        # Writes <run>/result.json for sweep summaries; in a sweep, a failed run is recorded
        # and returns NaN instead of stopping the sweep.
        recorder = JobRecorder.for_run(cfg)
        return recorder.run(lambda: train(cfg, callbacks=[recorder], resume=resume))


if __name__ == "__main__":
    main()
