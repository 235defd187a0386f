"""Benchmarks of whole training runs, each arm interleaved with the others in one process.

python scripts/benchmark.py --callbacks                  # default run, with/without pictures
python scripts/benchmark.py --callbacks --repeats 2 model=resnet20 trainer.max_epochs=2
"""

import argparse
import logging

from convnet.benchmarks import BENCHMARKS
from convnet.console import show


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--callbacks",
        action="store_true",
        help="fit time of the default run with and without the TensorBoard picture callbacks",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each arm (default 1)")
    parser.add_argument("overrides", nargs="*", help="train config overrides for every arm")
    args = parser.parse_args()
    chosen = [name for name in BENCHMARKS if getattr(args, name)]
    if not chosen:
        parser.error(f"choose a benchmark: {', '.join(f'--{name}' for name in BENCHMARKS)}")
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats} must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in chosen:
        show(BENCHMARKS[name](repeats=args.repeats, overrides=args.overrides))


if __name__ == "__main__":
    main()
