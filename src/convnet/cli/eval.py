"""Evaluate a checkpoint on val and test: `convnet eval ckpt_path=<run>/checkpoints/last.ckpt`."""

from omegaconf import DictConfig

from convnet.cli.app import hydra_command
from convnet.cli.quiet import lightning_logs_once
from convnet.errors import one_line_errors


@hydra_command("eval")
def main(cfg: DictConfig) -> None:
    """Evaluate a checkpoint on val and test (configs/eval.yaml)."""
    with one_line_errors():
        from convnet.evaluate import evaluate

        lightning_logs_once()

        evaluate(cfg)


if __name__ == "__main__":  # python -m convnet.cli.eval (as DDP starts its ranks)
    main()
