"""What every stage script shares: logging set-up and one-line errors.

A :class:`~regimelab.exceptions.RegimelabError` (bad input or params) ends the
stage with ``error: <message>`` on stderr and exit status 2, no traceback.
Anything else is a bug in regimelab and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence

from regimelab.exceptions import RegimelabError

EXIT_USER_ERROR = 2


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stderr as ``LEVEL name: message``, from ``level`` up (unless the process
    has set up logging already)."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


@contextlib.contextmanager
def quiet(name: str) -> Iterator[None]:
    """Logger ``name`` at WARNING inside the block: a library's INFO notes that say
    nothing to the user (Lightning's on each fit, Alembic's on a store made in passing)."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(before)


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None, *,
        level: int = logging.INFO) -> int:
    """Call ``main(argv)`` with logging from ``level`` up; return 0, or 2 after a one-line
    message for a user's mistake."""
    setup_logging(level)
    try:
        main(argv)
    except RegimelabError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USER_ERROR
    return 0
