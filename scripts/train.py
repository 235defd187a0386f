"""Train a classifier: `python scripts/train.py model=vgg16 data=cifar10`."""

import hydra
from omegaconf import DictConfig

from convnet.console import config_tree, show
from convnet.runs import register_resolvers
from convnet.train import metric_value, train

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    show(config_tree(cfg))
    metrics = train(cfg)
    return metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
