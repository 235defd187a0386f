"""A quiet console: the third-party notices a convnet run has no use for, hidden at their source.

Each filter names the one message and the module that emits it, so any other warning still
shows. With Python's own warning options (`python -W default ...`, PYTHONWARNINGS) nothing is
hidden: the user has chosen what to see.
"""

from __future__ import annotations

import logging
import sys
import warnings

# Lightning's pytree helper builds torch's LeafSpec, which torch >= 2.10 deprecates; nothing a
# user can change (Lightning's to fix).
LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
LEAFSPEC_MODULE = r"lightning\.pytorch\.utilities\._pytree"
# Lightning's advertisements for its cloud services (litlogger, litmodels), logged at INFO
# through this logger on every run.
TIPS_LOGGER = "lightning.pytorch.utilities.rank_zero"
TIP = "💡 Tip:"


def _not_a_tip(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(TIP)


def lightning_logs_once() -> None:
    """Leave Lightning's messages to the handlers already there (Hydra's console and the run's
    log file). Imported after those exist, as the commands import it, Lightning's root package
    adds a console handler of its own beside them, and every one of its lines would show twice;
    imported before, its subpackages keep their lines from the run's log."""
    if not logging.getLogger().handlers:
        return
    lightning = logging.getLogger("lightning")
    for handler in list(lightning.handlers):
        if type(handler) is logging.StreamHandler:
            lightning.removeHandler(handler)


def quiet_third_party() -> None:
    """Hide Lightning's LeafSpec deprecation warning and its litlogger/litmodels tips, unless
    Python's warning options were given."""
    if sys.warnoptions:
        return
    warnings.filterwarnings("ignore", LEAFSPEC, FutureWarning, LEAFSPEC_MODULE)
    tips = logging.getLogger(TIPS_LOGGER)
    if _not_a_tip not in tips.filters:
        tips.addFilter(_not_a_tip)
