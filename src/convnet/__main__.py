"""`python -m convnet <subcommand> ...`: the `convnet` command (convnet.cli)."""

from convnet.cli import main

if __name__ == "__main__":
    main(prog="python -m convnet")
