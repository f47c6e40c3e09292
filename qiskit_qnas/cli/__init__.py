"""The ``qnas`` command line: search, resume, report and export.

::

    qnas search --dataset iris --qubits 2:4 --layers 1:2 --out runs/iris
    qnas resume runs/iris            # after a crash / kill: continues from the last generation
    qnas report runs/iris            # front table, test accuracy, (re)writes pareto.png
    qnas report runs/iris --on-target  # + the test accuracy with the quantum layer on the run's target
    qnas export runs/iris --candidate 0 --format qasm3

A run directory holds ``config.json`` (written first: every setting needed to resume, including the
dataset arguments), what :class:`~qiskit_qnas.estimator.QNASEstimator` writes with
``checkpoint_dir=`` (``supercircuit.pt``, ``checkpoint.json``, ``result.json``, ``candidates.csv``,
``pareto.png``, ``model.pt``, ``best_circuit.qpy``) and, once the chosen model is scored on the test
split, ``summary.json``. ``search`` and ``resume`` check that the directory is new, empty or a run of
exactly these settings before writing anything (:func:`qiskit_qnas.rundir.check_run_directory`); a
damaged or foreign file ends ``resume``, ``report`` and ``export`` with one line naming it and the fix
(exit code 2), and nothing is modified. Run directories are read as data only (no pickle is loaded).

Every argument is checked before any work starts (no run directory is created for a bad command
line); a bad one ends the command with exit code 2 and a single line on stderr naming the argument
and the allowed values.

The package, one concept a module: :mod:`~qiskit_qnas.cli.arguments` (the parser, argument types,
library errors under their flags), :mod:`~qiskit_qnas.cli.settings` (a run's settings, checked),
:mod:`~qiskit_qnas.cli.run_directory` (``config.json`` and run files as usage errors),
:mod:`~qiskit_qnas.cli.logs` (logging while a command runs) and :mod:`~qiskit_qnas.cli.commands`.
Backends by name and ``--target`` specifications are :mod:`qiskit_qnas.backends`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from ..backends import TARGET_SYNTAX, fake_backend, fake_backend_classes, target_backend
from .arguments import (
    DATASETS,
    DD_CHOICES,
    LOG_LEVELS,
    PARAM_FLAGS,
    PROG,
    TWIRLING_CHOICES,
    Terminated,
    UsageError,
    build_parser,
)
from .arguments import _library_error as _library_error  # importable here, as before the package
from .commands import COMMANDS, cmd_export, cmd_report, cmd_resume, cmd_search, on_target_accuracy
from .logs import configure_logging
from .run_directory import CONFIG_FORMAT, CONFIG_SECTIONS
from .settings import export_backend, load_data, make_estimator, prepare


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qnas`` console script; returns the exit code (2 for a bad command line)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    with configure_logging(getattr(args, "log_level", "warning")), _terminate_as_interrupt():
        try:
            return COMMANDS[args.command](args)
        except UsageError as exc:
            parser.error(str(exc))
        except KeyboardInterrupt as exc:  # before or after a fit (inside one, the command says how to resume)
            what, code = ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
            print(f"{PROG}: {what}", file=sys.stderr)
            return code


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
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


__all__ = ["COMMANDS", "CONFIG_FORMAT", "CONFIG_SECTIONS", "DATASETS", "DD_CHOICES", "LOG_LEVELS", "PARAM_FLAGS",
           "PROG", "TARGET_SYNTAX", "TWIRLING_CHOICES", "UsageError", "build_parser", "cmd_export",
           "cmd_report", "cmd_resume", "cmd_search", "configure_logging", "export_backend", "fake_backend",
           "fake_backend_classes", "load_data", "main", "make_estimator", "on_target_accuracy", "prepare",
           "target_backend"]
