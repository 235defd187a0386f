"""Train a classifier: `python scripts/train.py model=vgg16 data=cifar10`."""

from convnet.cli.train import main

if __name__ == "__main__":
    main()
