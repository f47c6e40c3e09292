"""Logging of a ``qnas`` command: the package's records at ``--log-level`` on stderr while it runs."""

from __future__ import annotations

import contextlib
import logging
import sys


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests replace it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


@contextlib.contextmanager
def configure_logging(level: str):
    """Log the package's records at ``level`` and above to stderr while the command runs (the
    logger's previous level and handlers are restored afterwards, for in-process callers)."""
    package = logging.getLogger("qiskit_qnas")
    previous = package.level
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root_handles = any(not isinstance(h, logging.NullHandler) for h in logging.getLogger().handlers)
    package.setLevel(level.upper())
    if not root_handles:
        package.addHandler(handler)
    try:
        yield
    finally:
        package.setLevel(previous)
        if handler in package.handlers:
            package.removeHandler(handler)
