"""Ctrl-C and SIGTERM while ``qnas`` runs: one line and the shell's exit code (130, 143), never a traceback.

Light on purpose (the standard library only): :func:`qiskit_qnas.cli.main` installs it before the parser,
the commands and the library are imported, which takes seconds, so an interruption then ends as cleanly
as one during a search.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

PROG = "qnas"


class Terminated(KeyboardInterrupt):
    """SIGTERM received while a command ran (exit code 143, as a shell reports a process it terminated;
    a run left behind resumes as after Ctrl-C)."""


@contextlib.contextmanager
def stop_while_loading() -> Iterator[None]:
    """Inside the block (the imports), Ctrl-C and SIGTERM print their one line and end the process at
    once with 130 / 143 (``os._exit``: nothing is written yet, nothing to clean up). No exception is
    raised: one raised by a signal handler can surface inside an extension module's initialisation
    (measured: torch's pybind11 code called ``std::terminate`` and the process aborted), and CPython marks
    a ``KeyboardInterrupt`` raised inside ``exec`` of a source string as unhandled even when caught."""
    def stop(signum, frame):
        what, code = ("terminated", 143) if signum == signal.SIGTERM else ("interrupted", 130)
        print(f"{PROG}: {what}", file=sys.stderr, flush=True)
        os._exit(code)

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interruption(exc: KeyboardInterrupt) -> tuple[str, int]:
    """What ended the command and its exit code: ``("terminated", 143)`` or ``("interrupted", 130)``."""
    return ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)


def report_interruption(exc: KeyboardInterrupt, hint: str = "") -> int:
    """Print the one line of an interruption (``hint``: how to continue) and return its exit code."""
    what, code = interruption(exc)
    print(f"{PROG}: {what}{'; ' + hint if hint else ''}", file=sys.stderr)
    return code


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``), so that it
    ends the way Ctrl-C does: files written atomically, the resume hint printed, exit code 143."""
    def terminate(signum, frame):
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
