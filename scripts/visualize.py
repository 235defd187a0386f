"""Write a checkpoint's TensorBoard pictures as PNG files.

python scripts/visualize.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt [image=x.png]
"""

import hydra
from omegaconf import DictConfig

from convnet.errors import one_line_errors
from convnet.runs import register_resolvers
from convnet.visualize import visualize

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="visualize")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        visualize(cfg)


if __name__ == "__main__":
    main()
