"""Export a checkpoint's network: `convnet export ckpt_path=... format=onnx|safetensors`."""

from omegaconf import DictConfig

from convnet.cli.app import hydra_command
from convnet.cli.quiet import lightning_logs_once
from convnet.errors import one_line_errors


@hydra_command("export")
def main(cfg: DictConfig) -> None:
    """Export a checkpoint's network as ONNX or safetensors, checked against PyTorch."""
    with one_line_errors():
        from convnet.export import export

        lightning_logs_once()
        export(cfg)


if __name__ == "__main__":  # python -m convnet.cli.export (as DDP starts its ranks)
    main()
