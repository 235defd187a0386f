"""Export a checkpoint's network as ONNX or safetensors, checked against PyTorch.

python scripts/export.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt format=onnx
"""

from convnet.cli.export import main

if __name__ == "__main__":
    main()
