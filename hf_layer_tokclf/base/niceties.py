"""Steps a finished run can do without: they may fail with a warning, never taking the run's results with them.

The model card and its cost figures, the printed score tables: each runs inside `optional_step`, which turns
any error into a warning naming the step and the error, and goes on. What a run exists for (the trained model,
its tokenizer, ``metrics.json``) is written before any of them and outside this, so its errors still stop the
run where ``--resume`` can pick it up.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["optional_step"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def optional_step(what: str) -> Iterator[None]:
    """Runs the block; an `Exception` in it is logged as "Skipped <what>: <error>" instead of raised.

    ``what`` names the step as a reader of the warning knows it ("the model card"). A value the block
    was to set keeps the one it had before (set a fallback first). Interrupts (KeyboardInterrupt,
    SystemExit) still stop the program. The traceback is logged too when DEBUG logging is on.
    """
    try:
        yield
    except Exception as error:
        logger.warning(
            "Skipped %s: %s: %s", what, type(error).__name__, error, exc_info=logger.isEnabledFor(logging.DEBUG)
        )
