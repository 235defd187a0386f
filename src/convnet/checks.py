"""The value checks every config key and constructor argument goes through, one message each.

Each check takes the value and the key it came from (`data.batch_size`, `kernel_size`,
`layers[2] (conv)` is added by the caller) and returns the value in its working form, or
raises ConfigError worded by `refuse`: `key=value is not allowed: use <what is allowed>.`
The wording depends on the key, the value and the kind of check alone, so a bad value reads
the same whether the whole-config check (convnet.config.validate) or a constructor caught it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what is allowed."""

    # Of an error listing every problem found at once (`listing`): a line each.
    problems: tuple[str, ...] = ()

    @classmethod
    def listing(cls, problems: Sequence[str], fix: str) -> ConfigError:
        """Return the error naming every problem found in a config, a line each, then `fix`."""
        error = cls("invalid config:\n  " + "\n  ".join(problems) + f"\n{fix}")
        error.problems = tuple(problems)
        return error


def refuse(key: str, value: Any, allowed: str) -> ConfigError:
    """Return the error for `key=value`, saying what is allowed (the caller raises it)."""
    if isinstance(value, ListConfig | DictConfig):
        value = OmegaConf.to_container(value)
    return ConfigError(f"{key}={value!r} is not allowed: use {allowed}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def int_at_least(value: Any, key: str, minimum: int) -> int:
    """Return `value` as an int if it is an integer >= `minimum`, else raise naming `key`."""
    if not _is_int(value) or value < minimum:
        raise refuse(key, value, f"an integer >= {minimum}")
    return int(value)


def positive_int(value: Any, key: str) -> int:
    """Return `value` as an int if it is an integer >= 1 (a count, a size, a width)."""
    return int_at_least(value, key, 1)


def non_negative_int(value: Any, key: str) -> int:
    """Return `value` as an int if it is an integer >= 0 (a padding, a number of workers)."""
    return int_at_least(value, key, 0)


def integer(value: Any, key: str) -> int:
    """Return `value` as an int if it is any integer (a seed)."""
    if not _is_int(value):
        raise refuse(key, value, "an integer")
    return int(value)


def positive_number(value: Any, key: str) -> float:
    """Return `value` as a float if it is a number > 0 (a learning rate, a factor)."""
    if not _is_number(value) or value <= 0:
        raise refuse(key, value, "a number > 0")
    return float(value)


def non_negative_number(value: Any, key: str) -> float:
    """Return `value` as a float if it is a number >= 0 (a weight decay)."""
    if not _is_number(value) or value < 0:
        raise refuse(key, value, "a number >= 0")
    return float(value)


def fraction(value: Any, key: str) -> float:
    """Return `value` as a float if it is in [0, 1): a probability of dropping, a label
    smoothing, a momentum, a share of the data or of the steps."""
    if not _is_number(value) or not 0 <= value < 1:
        raise refuse(key, value, "a number in [0, 1)")
    return float(value)


def boolean(value: Any, key: str) -> bool:
    """Return `value` if it is true or false."""
    if not isinstance(value, bool):
        raise refuse(key, value, "true or false")
    return value


def sequence(value: Any, key: str, example: str) -> list[Any]:
    """Return `value` as a list if it is a list (or tuple, OmegaConf ListConfig), not a
    string or a single value; `example` shows one, e.g. `[64, M, 128, M]`."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise refuse(key, value, f"a list, e.g. {key}={example}")
    return list(value)


def listed(items: Sequence[Any], shown: int = 4, separator: str = ", ") -> str:
    """Return the first `shown` of `items` joined, then ` (and N more)` for the rest."""
    more = f" (and {len(items) - shown} more)" if len(items) > shown else ""
    return separator.join(str(item) for item in items[:shown]) + more


def counted(count: int, noun: str) -> str:
    """Return `1 channel`, `3 channels`: the count and the noun, plural unless one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def file_in_the_way(folder: Path) -> Path | None:
    """Return the file at `folder` or above it that keeps it from being a folder, or None."""
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def output_folder(value: Any, key: str) -> Path:
    """Return `value` as the folder a command writes into, refusing one a file is in the way
    of (the path itself or a folder above it)."""
    folder = Path(str(value))
    blocking = file_in_the_way(folder.absolute())
    if blocking == folder.absolute():
        raise ConfigError(f"{key}={value} is a file, not a folder: give the folder to write into")
    if blocking is not None:
        raise ConfigError(
            f"{key}={value} cannot be made: {blocking} is a file; give the folder to write into"
        )
    return folder


def keep_existing(paths: Sequence[Path], key: str, value: Any, overwrite: Any) -> None:
    """Raise ConfigError when any of `paths`, the files a command is about to write at the
    user's `key=value` (an output folder or file), exists already and `overwrite` is not
    true: a command replaces nothing a user has unless told to."""
    if boolean(overwrite, "overwrite"):
        return
    existing = [path for path in paths if path.exists()]
    if not existing:
        return
    fix = f"give another {key}, or overwrite=true to replace"
    if existing == [Path(value)]:  # the output file itself
        raise ConfigError(f"{key}={value} exists already: {fix} it")
    named = [str(path.relative_to(value)) for path in existing[:4]]
    more = f", and {len(existing) - 4} more" if len(existing) > 4 else ""
    raise ConfigError(
        f"{key}={value} holds {counted(len(existing), 'file')} already ({', '.join(named)}{more}): "
        f"{fix} {'them' if len(existing) > 1 else 'it'}"
    )


def to_pair(value: Any, key: str, minimum: int = 1) -> tuple[int, int]:
    """Return `value` as a (height, width) pair of ints, each at least `minimum`.

    Takes an int (both sides) or any two-int sequence (list, tuple, OmegaConf ListConfig):
    kernel_size, strides, dilation, padding in pixels, image_size.
    """
    pair = _ints_pair(value)
    if pair is None or min(pair) < minimum:
        raise refuse(
            key, value, f"an integer >= {minimum} or [height, width] of integers >= {minimum}"
        )
    return pair


def _ints_pair(value: Any) -> tuple[int, int] | None:
    if _is_int(value):
        return int(value), int(value)
    two = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    if two and all(_is_int(v) for v in value):
        return int(value[0]), int(value[1])
    return None


def choose(table: Mapping[str, T], key: str, value: Any) -> T:
    """Return `table[value]`, or raise naming the key, the value and the names allowed."""
    if not isinstance(value, str) or value not in table:
        raise refuse(key, value, f"one of {', '.join(sorted(table))}")
    return table[value]
