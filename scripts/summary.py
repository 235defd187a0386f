"""Print a network's layers: `python scripts/summary.py model=resnet18 data=cifar10`.

Takes the overrides scripts/train.py takes (the config is composed from configs/train.yaml
with Hydra's compose API) and builds only the model, on the meta device: nothing is
trained, downloaded or written, so no run directory is made.
"""

from convnet.cli.summary import main

if __name__ == "__main__":
    main()
