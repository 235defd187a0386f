"""Classify image files with a trained checkpoint: top-k classes, a table and a CSV.

python scripts/predict.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt inputs=photos/
"""

from convnet.cli.predict import main

if __name__ == "__main__":
    main()
