"""Train a classifier: `python scripts/train.py model=vgg16 data=cifar10`."""

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from convnet.checkpoints import CheckpointError
from convnet.config import ConfigError
from convnet.console import config_tree, show
from convnet.guards import DivergenceError
from convnet.runs import NoRunToResumeError, register_resolvers
from convnet.sweeps.results import JobRecorder
from convnet.train import resume_checkpoint, train

register_resolvers()


# Mistakes in what the user gave, whose messages say what to do: shown without a traceback.
USER_ERRORS = (ConfigError, CheckpointError, NoRunToResumeError, DivergenceError)


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    show(config_tree(cfg))
    try:
        resume = None
        if HydraConfig.get().mode == RunMode.RUN:
            # A checkpoint that cannot be resumed fails before result.json is written over.
            resume = resume_checkpoint(cfg)
        # Writes <run>/result.json for sweep summaries; in a sweep, a failed run is recorded
        # and returns NaN instead of stopping the sweep.
        recorder = JobRecorder.for_run(cfg)
        return recorder.run(lambda: train(cfg, callbacks=[recorder], resume=resume))
    except USER_ERRORS as error:
        raise SystemExit(f"{type(error).__name__}: {error}") from error


if __name__ == "__main__":
    main()
