"""The `convnet` command (and `python -m convnet`): `convnet <subcommand> [arguments]`.

Each subcommand is the main of a module of this package, the same function that
scripts/<name>.py calls, and takes the same arguments (Hydra overrides for train, eval,
visualize, predict and export; flags and overrides for the others). A subcommand's module
is imported only when it is asked for, so `convnet --help` lists them all without torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

# subcommand -> (module in convnet.cli, what it does)
COMMANDS = {
    "train": ("train", "train (and test) a classifier: convnet train model=vgg16 data=cifar10"),
    "eval": ("eval", "evaluate a checkpoint on val and test: convnet eval ckpt_path=..."),
    "predict": ("predict", "classify image files with a checkpoint: ckpt_path=... inputs=..."),
    "export": ("export", "a checkpoint's network as ONNX or safetensors: format=onnx"),
    "summary": ("summary", "print a network's layers: convnet summary model=resnet18"),
    "visualize": ("visualize", "write a checkpoint's pictures as PNG files: ckpt_path=..."),
    "explain": ("explain", "walk through one convolution, step by step"),
    "benchmark": ("benchmark", "training throughput against plain PyTorch and the model alone"),
    "sweep-summary": ("sweep_summary", "a sweep's table, summary.csv, summary.md, summary.png"),
}


def usage(prog: str) -> str:
    """Return the help of the `convnet` command: its subcommands and train's config groups."""
    from convnet.cli.app import groups_help

    width = max(len(name) for name in COMMANDS)
    commands = "\n".join(f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items())
    return (
        f"usage: {prog} <subcommand> [arguments]   ({prog} <subcommand> --help for its own)\n\n"
        "Train and understand convolutional image classifiers. Runs write to ./outputs.\n\n"
        f"Subcommands:\n{commands}\n\n"
        "Config groups of train (pick one with group=option; any value with key=value):\n"
        f"{groups_help('train')}"
    )


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> object:
    """Run the subcommand `argv` names (default: the command line); return what it returns."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    prog = prog or Path(sys.argv[0]).name
    if not arguments or arguments[0] in ("-h", "--help"):
        print(usage(prog))
        return None
    name, rest = arguments[0], arguments[1:]
    if name not in COMMANDS:
        raise SystemExit(
            f"{prog}: unknown subcommand {name!r}; choose from {', '.join(COMMANDS)} "
            f"({prog} --help says what each does)"
        )
    module = importlib.import_module(f"convnet.cli.{COMMANDS[name][0]}")
    # Hydra and argparse read the command line from sys.argv: the subcommand's own arguments,
    # under the name the user typed.
    sys.argv = [f"{prog} {name}", *rest]
    # Lightning starts DDP's other ranks as `python -m <__main__'s module> <sys.argv[1:]>`
    # (or `python <sys.argv[0]> ...` for a module with no spec, as a console script is):
    # the subcommand's module, so that they run `python -m convnet.cli.train <its arguments>`
    # and not `convnet <its arguments>` with the subcommand left out.
    sys.modules["__main__"].__spec__ = module.__spec__
    return module.main()
