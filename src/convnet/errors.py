"""How every entry point shows a user's mistake: one line, the traceback kept in the log.

A mistake in what the user gave (a config value, a file, a folder, a full disk) raises an
error whose message names the problem and the fix; 40 lines of traceback above it only
hide that line. Entry points wrap their main function in `one_line_errors`: such an error
ends the command with status 1 and its message alone on stderr, while the traceback goes
to the run's log file (Hydra's `<task>.log` in the run folder), or to the terminal with
`HYDRA_FULL_ERROR=1`. Anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator

from hydra.errors import HydraException, InstantiationException
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)


class DivergenceError(RuntimeError):
    """The loss, a weight or a buffer became NaN or infinite, or the loss blew up far beyond a
    guess's (raised by convnet.guards; defined here so that entry points need no torch)."""


# What a user's mistake raises: convnet's own errors (ConfigError, CheckpointError...) are
# ValueErrors, missing files and full disks OSErrors; Hydra's and OmegaConf's are about the
# config (an unknown group option, a missing mandatory value).
USER_ERRORS = (ValueError, OSError, DivergenceError, HydraException, OmegaConfBaseException)
FULL_ERROR = "HYDRA_FULL_ERROR"
_FULL_KEY = re.compile(r"full_key: (\S+)")


def user_error_line(error: BaseException) -> str | None:
    """Return the one line that shows `error` to a user, or None when it is not a user's
    mistake (a bug, whose traceback is wanted). Hydra's wrapper of an error raised while
    building a config's object is unwrapped, and the config key it was building named."""
    shown, building = error, None
    while isinstance(shown, InstantiationException) and shown.__cause__ is not None:
        found = _FULL_KEY.search(str(shown))
        building = building or (found.group(1) if found else None)
        shown = shown.__cause__
    if not isinstance(shown, USER_ERRORS):
        return None
    message = str(shown).strip()
    if isinstance(shown, OmegaConfBaseException):
        # OmegaConf appends `full_key: ...` and `object_type=...` lines to its first.
        message = message.splitlines()[0] if message else message
    elif isinstance(shown, HydraException):
        message = _one_line(message)
    where = f" (while building `{building}`)" if building else ""
    return f"{type(shown).__name__}: {message}{where}"


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Make a user's mistake raised inside end the command on one line (see the module).

    Used as `with one_line_errors():` in a Hydra task function (a decorator there would
    hide the script's file from Hydra, which finds configs/ beside it), or as a decorator.
    """
    try:
        yield
    except Exception as error:
        line = user_error_line(error)
        if line is None or os.environ.get(FULL_ERROR) == "1":
            raise
        _log_traceback(error)
        raise SystemExit(line) from error


def _one_line(message: str) -> str:
    """Return Hydra's message on one line: an unknown group option's message lists the
    options a line each, then the config search path (left out: it is always the same)."""
    head = message.partition("Config search path:")[0]
    first, *rest = [line.strip() for line in head.splitlines() if line.strip()]
    if not rest:
        return first
    title, *items = rest
    return f"{first}. {title} {', '.join(items)}" if items else f"{first}. {title}"


def _log_traceback(error: BaseException) -> None:
    """Write `error`'s traceback to the log files of this process only (not the console)."""
    exc_info = (type(error), error, error.__traceback__)
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "failed:", (), exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
