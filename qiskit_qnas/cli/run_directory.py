"""The commands' run directories: ``config.json`` and the run files read through
:mod:`qiskit_qnas.rundir`, whose errors (a missing, damaged or foreign file) become one-line usage
errors (:class:`~qiskit_qnas.cli.arguments.UsageError`) naming the file and the fix.

A run directory holds ``config.json`` (written first: every setting needed to resume, including the
dataset arguments; :data:`CONFIG_FORMAT`), what :class:`~qiskit_qnas.estimator.QNASEstimator`
writes with ``checkpoint_dir=`` and, once the chosen model is scored on the test split,
``summary.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..rundir import CONFIG, RunDirectoryError, check_run_directory, load_result, read_json_object
from .arguments import UsageError

CONFIG_FORMAT = 1
#: the sections of config.json and the type each must have
CONFIG_SECTIONS = {"dataset": dict, "search_space": dict, "target": str, "estimator": dict}


def _read_json(path: Path) -> dict:
    try:
        return read_json_object(path)
    except RunDirectoryError as exc:
        raise UsageError(f"DIR: {exc}") from None


def _run_dir(path: Path, need: str = CONFIG) -> Path:
    """An existing run directory holding ``need`` (else a usage error)."""
    if not path.is_dir():
        raise UsageError(f"DIR: invalid value {str(path)!r}; allowed: a run directory written by `qnas search`")
    if not (path / need).exists():
        hint = "" if need == CONFIG else " (the run is not finished: `qnas resume DIR` completes it)"
        raise UsageError(f"DIR: invalid value {str(path)!r}: no {need}{hint}; allowed: a run directory "
                         f"written by `qnas search`")
    return path


def _load_config(run_dir: Path) -> dict[str, Any]:
    _run_dir(run_dir)
    from ..estimator import QNASEstimator

    config = _read_json(run_dir / CONFIG)
    if config.get("format") != CONFIG_FORMAT or not all(
            isinstance(config.get(k), kind) for k, kind in CONFIG_SECTIONS.items()) or not (
            set(config["estimator"]) <= set(QNASEstimator().get_params())):
        raise UsageError(f"DIR: {run_dir / CONFIG}: is not a qnas run configuration of format {CONFIG_FORMAT}; fix: "
                         f"restore it, or start a new run in another directory")
    return config


def _load_result(run_dir: Path):
    try:
        return load_result(run_dir)
    except RunDirectoryError as exc:
        raise UsageError(f"DIR: {exc}") from None


def _check_directory(run_dir: Path, fingerprint: str, seed: int, flag: str) -> None:
    try:
        check_run_directory(run_dir, fingerprint, seed)
    except RunDirectoryError as exc:
        raise UsageError(f"{flag}: {exc}") from None
