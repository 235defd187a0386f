"""Print a network's layers: `convnet summary model=resnet18 data=cifar10`.

Takes the overrides `convnet train` takes (the config is composed from configs/train.yaml
with Hydra's compose API) and builds only the model, on the meta device: nothing is
trained, downloaded or written, so no run directory is made.
"""

import argparse

from convnet.config import validate
from convnet.config_keys import compose_or_explain
from convnet.errors import one_line_errors


@one_line_errors()
def main(argv: list[str] | None = None) -> None:
    """Print the layer table of the model the overrides pick."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "overrides", nargs="*", help="config overrides, as for convnet train: model=vgg16 ..."
    )
    parser.add_argument(
        "--max-depth",
        type=int,
        default=-1,
        help="-1: a row per layer call (default); n: one row per module at depth n "
        "(2 gives one row per residual block)",
    )
    args = parser.parse_args(argv)
    cfg = compose_or_explain("train", args.overrides)
    validate(cfg)
    # torch and the model zoo only once the config is known to be good.
    import torch

    from convnet.build import build_model, check_buildable
    from convnet.console import show
    from convnet.data.describe import complete_data_config
    from convnet.summary import summarize, summary_table

    check_buildable(cfg)
    complete_data_config(cfg)  # an image folder's null keys, as a training run takes them

    choices = cfg.hydra.runtime.choices
    # On the meta device no weights are allocated or initialised; the size check still runs.
    with torch.device("meta"):
        network = build_model(cfg.model)
    summary = summarize(network, cfg.data.in_channels, cfg.data.image_size, args.max_depth)
    show(summary_table(summary, title=f"model={choices.model} data={choices.data}"))


if __name__ == "__main__":  # python -m convnet.cli.summary (as DDP starts its ranks)
    main()
