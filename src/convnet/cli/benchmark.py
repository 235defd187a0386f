"""Training throughput: convnet against a hand-written PyTorch loop and the model alone.

convnet benchmark model=resnet20 data.batch_size=128   # every arm; b/c, b/b32, b/a
convnet benchmark --sweep --batch-sizes 64,128,256 --image-sizes 32,64 model=vgg11
convnet benchmark --sweep --models resnet18,vgg16_bn,resnet20 --batch-sizes 512
convnet benchmark --callbacks                           # pictures' cost, whole runs
Overrides are those of `convnet train` (the same as `python scripts/benchmark.py ...`).
"""

import argparse
import logging

from convnet.cli.quiet import quiet_third_party
from convnet.compose import CONFIG_DIR
from convnet.config import validate
from convnet.config_keys import compose_or_explain
from convnet.console import show
from convnet.errors import one_line_errors


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, e.g. 64,128,256")
    return sizes


def _names(text: str) -> list[str]:
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if not (CONFIG_DIR / "model" / f"{name}.yaml").is_file()]
    if not names or unknown:
        known = ", ".join(sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml")))
        raise argparse.ArgumentTypeError(f"{text!r}: unknown model configs; choose from {known}")
    return names


def _arms(text: str) -> list[str]:
    from convnet.arms import ARMS, LETTERS

    by_letter = {letter: arm for arm, letter in LETTERS.items()}
    arms = [by_letter.get(a, a) for a in text.split(",")]
    if any(arm not in ARMS for arm in arms):
        letters = ", ".join(f"{LETTERS[arm]} ({arm})" for arm in ARMS)
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {letters}")
    return arms


@one_line_errors()
def main(argv: list[str] | None = None) -> None:
    """Print the throughput table (or the sweep's, or the pictures' cost) of the overrides."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sweep", action="store_true", help="over --batch-sizes x --image-sizes")
    mode.add_argument(
        "--callbacks",
        action="store_true",
        help="fit time of the default run with and without the TensorBoard picture callbacks",
    )
    parser.add_argument("--repeats", type=int, help="timed repeats of each arm (3; sweep 1)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (5)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat (20)")
    parser.add_argument("--arms", type=_arms, help="e.g. b,c,c32 (default: a,b,b32,l,c,c32,d)")
    parser.add_argument(
        "--loader-workers",
        type=int,
        help="DataLoader workers of arm (a) (default: min(8, cores) on CUDA, 0 on the CPU)",
    )
    parser.add_argument("--batch-sizes", type=_sizes, default=[32, 64, 128, 256])
    parser.add_argument("--image-sizes", type=_sizes, default=[32])
    parser.add_argument(
        "--models",
        type=_names,
        default=[],
        help="sweep these model configs, e.g. resnet18,vgg16_bn,resnet20 (the run's model)",
    )
    parser.add_argument("overrides", nargs="*", help="train config overrides, e.g. model=vgg11")
    args = parser.parse_args(argv)
    for name in ("repeats", "warmup", "steps"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            parser.error(f"--{name}={value} is too small")
    if args.models and not args.sweep:
        parser.error("--models goes with --sweep, e.g. --sweep --models=resnet20,vgg11")
    # A bad override fails here, before torch and Lightning are imported (seconds).
    cfg = compose_or_explain("train", args.overrides)
    validate(cfg)
    from convnet.arms import ARMS
    from convnet.benchmarks import (
        callbacks_overhead,
        ratio_lines,
        sweep,
        throughput,
        throughput_table,
    )
    from convnet.build import check_buildable

    check_buildable(cfg)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_third_party()
    options = {
        "warmup": args.warmup,
        "steps": args.steps,
        "arms": args.arms or list(ARMS),
        "loader_workers": args.loader_workers,
    }
    if args.callbacks:
        show(callbacks_overhead(repeats=args.repeats or 1, overrides=args.overrides))
    elif args.sweep:
        show(
            sweep(
                args.batch_sizes,
                args.image_sizes,
                args.overrides,
                models=args.models,
                repeats=args.repeats or 1,
                **options,
            )
        )
    else:
        result = throughput(args.overrides, repeats=args.repeats or 3, **options)
        show(throughput_table(result, f"throughput: {' '.join(args.overrides) or 'default run'}"))
        for line in ratio_lines(result):
            print(line)


if __name__ == "__main__":  # python -m convnet.cli.benchmark (as DDP starts its ranks)
    main()
