"""Library log capture: for the life of a run (or an evaluation), what transformers, PEFT, TRL and Python warnings
print goes to a log file in the run folder instead of the console. Used by every local backend and by `ftorch eval`,
so it lives with the run, not with a backend."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..safe_io import open_append

if TYPE_CHECKING:
    from .rundir import RunDir

LIBRARY_LOGGERS = ("transformers", "peft", "trl", "ftorch", "py.warnings")


class SafeFileHandler(logging.FileHandler):
    """A logging.FileHandler that appends without following a symlink (safe_io.open_append): one planted at
    train.log is refused, naming it."""

    def _open(self):
        return open_append(Path(self.baseFilename))


def attach_log_file(run: RunDir, file: Path | None = None) -> logging.Handler:
    """For the life of the run, library output goes to train.log instead of the console: transformers/peft/trl/
    ftorch log records and Python warnings (deprecations, PEFT's notices), with transformers' own stderr handler
    and its weight-loading bars off. The console keeps ftorch's lines and the training progress."""
    handler = SafeFileHandler(file or run.log)  # `file`: elsewhere than train.log (ftorch eval --out)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    from ..secrets import ScrubFilter

    handler.addFilter(ScrubFilter())  # no secret reaches train.log
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    warnings_logger = logging.getLogger("py.warnings")
    handler._ftorch_restore = (warnings_logger.propagate, transformers_console(False))  # type: ignore[attr-defined]
    warnings_logger.propagate = False  # not also to the root logger's console handler
    logging.captureWarnings(True)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    propagate, console = getattr(handler, "_ftorch_restore", (True, None))
    logging.captureWarnings(False)
    logging.getLogger("py.warnings").propagate = propagate
    if console is not None:
        transformers_console(console)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def transformers_console(on: bool) -> bool | None:
    """Turn transformers' stderr log handler and progress bars (loading weights, writing shards) on or off;
    returns whether the bars were on (None when transformers is absent)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return None
    was_on = hf_logging.is_progress_bar_enabled()
    if on:
        hf_logging.enable_default_handler()
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_default_handler()
        hf_logging.disable_progress_bar()
    return was_on
