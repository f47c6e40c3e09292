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

from ..datasets import DATASETS
from ..run_schema import SEARCH_SPACE, SETTING, any_of, array, check, choice, integer, mapping, optional, record, text
from ..run_schema import SUMMARY as SUMMARY_SCHEMA
from ..rundir import CONFIG, RunDirectoryError, check_run_directory, load_result, read_checked, read_json_object
from .arguments import UsageError

CONFIG_FORMAT = 1
#: the sections of config.json and the type each must have
CONFIG_SECTIONS = {"dataset": dict, "search_space": dict, "target": str, "estimator": dict}
_DATASET_OPTIONS = {"data_dir": optional(text(4096)), "n_components": optional(integer(1, 10**6)),
                    "image_size": optional(integer(1, 1024)), "subset": optional(integer(1)),
                    "random_state": integer(0, 2**32 - 1)}
#: what ``config.json`` may hold (:mod:`qiskit_qnas.run_schema`); the estimator section is then
#: checked by the estimator itself
CONFIG_SCHEMA = record(
    {"format": choice(CONFIG_FORMAT), "dataset": any_of(
        record({"name": choice(*DATASETS), **_DATASET_OPTIONS}),
        record({"csv": text(4096), "target_column": text(1000), **_DATASET_OPTIONS}),
        expected="a dataset by name (name, ...) or a CSV file (csv, target_column, ...)"),
     "search_space": SEARCH_SPACE, "target": text(1000), "estimator": mapping(SETTING)},
    {"version": text(100), "command": array(text()), "fingerprint": text(100), "created": text(100)})


def _read_json(path: Path) -> dict:
    try:
        return read_json_object(path)
    except RunDirectoryError as exc:
        raise UsageError(f"DIR: {exc}") from None


def _read_summary(path: Path) -> dict:
    """``summary.json``, checked as data (:data:`qiskit_qnas.run_schema.SUMMARY`)."""
    try:
        return read_checked(path, SUMMARY_SCHEMA, "the summary of a qnas run")
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
    from ..space import SearchSpace

    path = run_dir / CONFIG
    config = _read_json(path)
    problem = None
    if config.get("format") != CONFIG_FORMAT or not all(
            isinstance(config.get(k), kind) for k, kind in CONFIG_SECTIONS.items()) or not (
            set(config["estimator"]) <= set(QNASEstimator().get_params())):
        problem = f"is not a qnas run configuration of format {CONFIG_FORMAT}"
    else:
        try:
            check(CONFIG_SCHEMA, config)
            SearchSpace.from_dict(config["search_space"])
            QNASEstimator(**config["estimator"])._check_params()
        except ValueError as exc:
            problem = f"is not a qnas run configuration ({' '.join(str(exc).split())[:300]})"
    if problem is not None:
        raise UsageError(f"DIR: {path}: {problem}; fix: restore it, or start a new run in another directory")
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
