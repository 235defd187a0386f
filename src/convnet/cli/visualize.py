"""Write a checkpoint's TensorBoard pictures as PNG files: `convnet visualize ckpt_path=...`."""

from omegaconf import DictConfig

from convnet.cli.app import hydra_command
from convnet.cli.quiet import lightning_logs_once
from convnet.errors import one_line_errors


@hydra_command("visualize")
def main(cfg: DictConfig) -> None:
    """Write a checkpoint's TensorBoard pictures as PNG files (configs/visualize.yaml)."""
    with one_line_errors():
        from convnet.visualize import visualize

        lightning_logs_once()

        visualize(cfg)


if __name__ == "__main__":  # python -m convnet.cli.visualize (as DDP starts its ranks)
    main()
