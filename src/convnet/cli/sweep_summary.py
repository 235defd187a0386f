"""Summarize a sweep: its table, summary.csv, summary.md and summary.png.

convnet sweep-summary outputs/train/multiruns/<date>_<time>
convnet sweep-summary            # the newest sweep under outputs/train/multiruns
"""

import argparse
import logging
from pathlib import Path

from convnet.errors import one_line_errors

SWEEPS = Path("outputs/train/multiruns")


@one_line_errors()
def main(argv: list[str] | None = None) -> None:
    """Write a sweep's summary files and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir",
        nargs="?",
        type=Path,
        help=f"the sweep's folder (default: the newest under {SWEEPS})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from convnet.sweeps.report import write_report
    from convnet.sweeps.summary import newest_sweep

    write_report(args.sweep_dir or newest_sweep(SWEEPS))


if __name__ == "__main__":  # python -m convnet.cli.sweep_summary (as DDP starts its ranks)
    main()
