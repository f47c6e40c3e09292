"""The ``qnas`` command line: search, resume, report and export.

::

    qnas search --dataset iris --qubits 2:4 --layers 1:2 --out runs/iris
    qnas resume runs/iris            # after a crash / kill: continues from the last generation
    qnas report runs/iris            # front table, test accuracy (writes pareto.png if missing)
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
:mod:`~qiskit_qnas.cli.logs` (logging while a command runs), :mod:`~qiskit_qnas.cli.commands`,
:mod:`~qiskit_qnas.cli.dispatch` (a command line run, its errors as one line) and
:mod:`~qiskit_qnas.cli.signals` (Ctrl-C and SIGTERM, handled before anything heavy is imported).
Backends by name and ``--target`` specifications are :mod:`qiskit_qnas.backends`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from .signals import stop_while_loading, terminate_as_interrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qnas`` console script; returns the exit code (2 for a bad command line, 130
    after Ctrl-C, 143 after SIGTERM, from the first moment: the library's imports take seconds)."""
    with stop_while_loading():
        from .dispatch import run_command
    with terminate_as_interrupt():
        return run_command(argv)


def __getattr__(name: str) -> Any:
    """The names this package exported before :mod:`~qiskit_qnas.cli.dispatch` held them, loaded on use."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(".dispatch", __name__), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


__all__ = ["main"]
