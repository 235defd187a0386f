"""Summarize a sweep: its table, summary.csv, summary.md and summary.png.

python scripts/sweep_summary.py outputs/train/multiruns/<date>_<time>
python scripts/sweep_summary.py            # the newest sweep under outputs/train/multiruns
"""

from convnet.cli.sweep_summary import main

if __name__ == "__main__":
    main()
