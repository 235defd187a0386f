"""Print a network's layers: `python scripts/summary.py model=resnet18 data=cifar10`.

Takes the overrides scripts/train.py takes (the config is composed from configs/train.yaml
with Hydra's compose API) and builds only the model, on the meta device: nothing is
trained, downloaded or written, so no run directory is made.
"""

import argparse

import torch

from convnet.compose import compose_config
from convnet.errors import one_line_errors
from convnet.summary import draw, summarize, summary_table
from convnet.train import build_model


@one_line_errors()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "overrides", nargs="*", help="config overrides, as for scripts/train.py: model=vgg16 ..."
    )
    parser.add_argument(
        "--max-depth",
        type=int,
        default=-1,
        help="-1: a row per layer call (default); n: one row per module at depth n "
        "(2 gives one row per residual block)",
    )
    args = parser.parse_args(argv)
    cfg = compose_config("train", args.overrides)
    choices = cfg.hydra.runtime.choices
    # On the meta device no weights are allocated or initialised; the size check still runs.
    with torch.device("meta"):
        network = build_model(cfg.model)
    summary = summarize(network, cfg.data.in_channels, cfg.data.image_size, args.max_depth)
    draw(summary_table(summary, title=f"model={choices.model} data={choices.data}"))


if __name__ == "__main__":
    main()
