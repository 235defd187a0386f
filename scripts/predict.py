"""Classify image files with a trained checkpoint: top-k classes, a table and a CSV.

python scripts/predict.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt inputs=photos/
"""

import hydra
from omegaconf import DictConfig

from convnet.errors import one_line_errors
from convnet.predict import predict
from convnet.runs import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        predict(cfg)


if __name__ == "__main__":
    main()
