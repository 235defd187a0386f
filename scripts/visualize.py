"""Write a checkpoint's TensorBoard pictures as PNG files.

python scripts/visualize.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt [image=x.png]
"""

from convnet.cli.visualize import main

if __name__ == "__main__":
    main()
