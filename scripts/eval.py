"""Evaluate a checkpoint on val and test.

python scripts/eval.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt
"""

import hydra
from omegaconf import DictConfig

from convnet.errors import one_line_errors
from convnet.evaluate import evaluate
from convnet.runs import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        evaluate(cfg)


if __name__ == "__main__":
    main()
