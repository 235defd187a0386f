"""Export a checkpoint's network as ONNX or safetensors, checked against PyTorch.

python scripts/export.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt format=onnx
"""

import hydra
from omegaconf import DictConfig

from convnet.errors import one_line_errors
from convnet.export import export
from convnet.runs import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        export(cfg)


if __name__ == "__main__":
    main()
