"""Classify image files with a trained checkpoint: `convnet predict ckpt_path=... inputs=...`."""

from omegaconf import DictConfig

from convnet.cli.app import hydra_command
from convnet.cli.quiet import lightning_logs_once
from convnet.errors import one_line_errors


@hydra_command("predict")
def main(cfg: DictConfig) -> None:
    """Classify image files with a checkpoint: top-k classes, a table and a CSV."""
    with one_line_errors():
        from convnet.predict import predict

        lightning_logs_once()
        predict(cfg)


if __name__ == "__main__":  # python -m convnet.cli.predict (as DDP starts its ranks)
    main()
