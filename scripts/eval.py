"""Evaluate a checkpoint on val and test.

python scripts/eval.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt
"""

from convnet.cli.eval import main

if __name__ == "__main__":
    main()
