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
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import functools
import json
import logging
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .rundir import (
    CONFIG,
    MODEL,
    RESULT,
    SUMMARY,
    RunDirectoryError,
    check_run_directory,
    completed_generations,
    load_result,
    read_json_object,
    read_tensors,
)
from .validation import InvalidArgument

PROG = "qnas"
CONFIG_FORMAT = 1

DATASETS = ("iris", "digits", "wine", "breast_cancer", "mnist", "fashion_mnist")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
TARGET_SYNTAX = "statevector, aer, aer:<fake backend>, runtime:<fake backend>, ibm:<backend name>"
TWIRLING_CHOICES = ("none", "gates", "measure", "all")
DD_CHOICES = ("XX", "XpXm", "XY4")

#: estimator parameter -> command-line flag (for error messages raised by the library)
PARAM_FLAGS = {
    "qubit_budget": "--qubit-budget", "population_size": "--population", "n_generations": "--generations",
    "supercircuit_epochs": "--supercircuit-epochs", "finetune_epochs": "--finetune-epochs",
    "finetune_samples": "--finetune-samples",
    "final_epochs": "--final-epochs", "batch_size": "--batch-size", "learning_rate": "--learning-rate",
    "shots": "--shots", "max_concurrent_jobs": "--max-concurrent-jobs",
    "runtime_options": "--resilience-level/--twirling/--dynamical-decoupling", "cut_time_limit": "--cut-time-limit",
    "cutting_objective": "--cutting-objective",
    "runtime_objective": "--runtime-objective", "selection": "--selection", "qubits": "--qubits",
    "layers": "--layers", "embeddings": "--embeddings", "embedding": "--embeddings", "rotations": "--rotations",
    "rotation": "--rotations", "entanglers": "--entanglers", "entangler": "--entanglers", "ranges": "--ranges",
    "learning_rates": "--learning-rates", "n_qubits": "--qubits", "n_components": "--pca",
    "image_size": "--image-size", "subset": "--subset", "data_dir": "--data-dir", "target_column": "--target-column",
    "backend": "--target", "mode": "--target", "target_mode": "--target", "seed": "--seed",
    "random_state": "--seed", "name": "--dataset", "path": "--csv", "noise_aware": "--noise-aware",
    "max_memory": "--max-memory",
}

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# the parser: one-line errors, typed arguments with "allowed:" messages
# ------------------------------------------------------------------------------------------------
class UsageError(Exception):
    """A bad command line found after parsing (exit code 2, one line on stderr)."""


class _Parser(argparse.ArgumentParser):
    """``argparse`` whose errors are a single line ``qnas: error: <argument>: <problem>; allowed: ...``."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(str(message).split())
        if message.startswith("argument "):
            message = message[len("argument "):]
        self.exit(2, f"{PROG}: error: {message}\n")


def _invalid(value: Any, allowed: str) -> argparse.ArgumentTypeError:
    shown = repr(value) if isinstance(value, str) else value
    return argparse.ArgumentTypeError(f"invalid value {shown}; allowed: {allowed}")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise _invalid(text, f"an integer >= {low}") from None
        if value < low:
            raise _invalid(value, f"an integer >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _invalid(text, "a positive number") from None
    if not value > 0 or value == float("inf"):
        raise _invalid(text, "a positive number")
    return value


def _memory(text: str) -> str:
    from .memory import MEMORY_SYNTAX, parse_memory

    try:
        parse_memory(text)
    except ValueError:
        raise _invalid(text, MEMORY_SYNTAX.removeprefix("None, ")) from None
    return text


def _int_range(text: str) -> tuple[int, int]:
    """``N`` or ``MIN:MAX`` (inclusive) with ``1 <= MIN <= MAX``."""
    allowed = "N or MIN:MAX with integers 1 <= MIN <= MAX"
    parts = text.split(":")
    if len(parts) not in (1, 2):
        raise _invalid(text, allowed)
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise _invalid(text, allowed) from None
    low, high = values[0], values[-1]
    if low < 1 or high < low:
        raise _invalid(text, allowed)
    return low, high


def _float_range(text: str) -> tuple[float, float]:
    allowed = "LOW:HIGH with 0 < LOW <= HIGH"
    parts = text.split(":")
    try:
        low, high = (float(p) for p in parts) if len(parts) == 2 else (float(parts[0]),) * 2
    except ValueError:
        raise _invalid(text, allowed) from None
    if not 0 < low <= high < float("inf"):
        raise _invalid(text, allowed)
    return low, high


def _choice_list(allowed: Sequence[str]):
    """A token of a ``nargs="+"`` option, itself possibly a comma list; each value in ``allowed``."""

    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not values:
            raise _invalid(text, ", ".join(allowed))
        for value in values:
            if value not in allowed:
                raise _invalid(value, ", ".join(allowed))
        return values

    return parse


def _choice(allowed: Sequence[str], normalise=str):
    def parse(text: str) -> str:
        value = normalise(text)
        if value not in allowed:
            raise _invalid(text, ", ".join(allowed))
        return value

    return parse


def _flatten(values: list[list[str]] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    return tuple(dict.fromkeys(v for group in values for v in group))


# ------------------------------------------------------------------------------------------------
# execution targets
# ------------------------------------------------------------------------------------------------
def _fake_key(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = key.removeprefix("fake_").removeprefix("fake")
    key = re.sub(r"_?v2$", "", key)
    return key.replace("_", "")


@functools.lru_cache(maxsize=1)
def fake_backend_classes() -> dict[str, type]:
    """The fake backends of ``qiskit_ibm_runtime.fake_provider`` by short name (``manila``...)."""
    from qiskit.providers import BackendV2
    from qiskit_ibm_runtime import fake_provider

    found: dict[str, type] = {}
    for name in dir(fake_provider):
        cls = getattr(fake_provider, name)
        if name.startswith("Fake") and isinstance(cls, type) and issubclass(cls, BackendV2):
            found.setdefault(_fake_key(name), cls)
    return dict(sorted(found.items()))


def fake_backend(name: str):
    """An instance of the fake backend called ``name`` (``fake_manila``, ``FakeManilaV2`` or ``manila``)."""
    classes = fake_backend_classes()
    cls = classes.get(_fake_key(name))
    if cls is None:
        raise ValueError(f"invalid value {name!r}; allowed: a fake backend of qiskit_ibm_runtime.fake_provider "
                         f"({', '.join(classes)})")
    return cls()


def _target_spec(text: str) -> str:
    """Syntax check and normalisation of ``--target`` (backends are resolved later)."""
    kind, _, name = text.partition(":")
    kind = kind.strip().lower()
    name = name.strip()
    if kind in ("statevector", "exact", "none") and not name:
        return "statevector"
    if kind == "aer" and not name:
        return "aer"
    if kind in ("aer", "runtime") and name:
        if _fake_key(name) not in fake_backend_classes():
            raise _invalid(text, f"{TARGET_SYNTAX}; fake backends: {', '.join(fake_backend_classes())}")
        return f"{kind}:{_fake_key(name)}"
    if kind == "ibm" and name:
        return f"ibm:{name}"
    raise _invalid(text, TARGET_SYNTAX)


def target_backend(spec: str) -> tuple[Any, str]:
    """``(backend, target_mode)`` for ``QNASEstimator`` from a normalised ``--target`` value."""
    kind, _, name = spec.partition(":")
    if kind == "statevector":
        return None, "auto"
    if kind == "aer" and not name:
        from qiskit_aer import AerSimulator

        return AerSimulator(), "aer"
    if kind in ("aer", "runtime"):
        return fake_backend(name), kind
    if kind == "ibm":
        from qiskit_ibm_runtime import QiskitRuntimeService

        # a saved account (QiskitRuntimeService.save_account) or the QISKIT_IBM_* environment
        return QiskitRuntimeService().backend(name), "runtime"
    raise ValueError(f"invalid value {spec!r}; allowed: {TARGET_SYNTAX}")


# ------------------------------------------------------------------------------------------------
# the parser
# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .space import EMBEDDINGS, ENTANGLERS, ROTATIONS

    parser = _Parser(prog=PROG, description="Quantum neural architecture search (QNAS) for Qiskit: train a "
                     "weight-sharing SuperCircuit, search it with NSGA-II on validation error, runtime and "
                     "circuit-cutting cost.")
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"qiskit-qnas {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # --- search ---------------------------------------------------------------------------------
    search = commands.add_parser("search", help="run a search and write a run directory",
                                 description="Train the SuperCircuit, run NSGA-II, fine-tune the chosen model and "
                                 "score it on the test split. Writes DIR/config.json first; `qnas resume DIR` "
                                 "continues an interrupted run.")
    data = search.add_argument_group("data")
    source = data.add_mutually_exclusive_group()
    source.add_argument("--dataset", type=_choice(DATASETS, str.lower), metavar="NAME",
                        help=f"a built-in dataset: {', '.join(DATASETS)}")
    source.add_argument("--csv", type=Path, metavar="PATH", help="a CSV file with a header row")
    data.add_argument("--target-column", metavar="NAME", help="the label column of --csv")
    data.add_argument("--data-dir", type=Path, metavar="DIR", help="where dataset files are (IDX files for mnist)")
    data.add_argument("--pca", type=_int_at_least(1), metavar="N", help="reduce the features to N PCA components")
    data.add_argument("--image-size", type=_int_at_least(1), metavar="N",
                      help="downsample images to N x N by average pooling (digits, mnist, fashion_mnist)")
    data.add_argument("--subset", type=_int_at_least(2), metavar="N", help="use N training samples")

    space = search.add_argument_group("search space")
    space.add_argument("--qubits", type=_int_range, metavar="MIN:MAX", help="qubits (N or MIN:MAX; default 2:8)")
    space.add_argument("--layers", type=_int_range, metavar="MIN:MAX", help="layers (default 1:4)")
    space.add_argument("--embeddings", type=_choice_list(EMBEDDINGS), nargs="+", metavar="NAME",
                       help=f"embeddings (space- or comma-separated): {', '.join(EMBEDDINGS)}")
    space.add_argument("--rotations", type=_choice_list(ROTATIONS), nargs="+", metavar="NAME",
                       help=f"rotation blocks: {', '.join(ROTATIONS)}")
    space.add_argument("--entanglers", type=_choice_list(ENTANGLERS), nargs="+", metavar="NAME",
                       help=f"entanglers: {', '.join(ENTANGLERS)}")
    space.add_argument("--ranges", type=_int_range, metavar="MIN:MAX", help="entanglement ranges (default 1:3)")
    space.add_argument("--learning-rates", type=_float_range, metavar="LOW:HIGH",
                       help="also search the fine-tuning learning rate (log scale)")

    objectives = search.add_argument_group("objectives and target")
    objectives.add_argument("--qubit-budget", type=_int_at_least(1), default=4, metavar="N",
                            help="largest subcircuit width circuit cutting may use (default 4)")
    objectives.add_argument("--target", type=_target_spec, default="statevector", metavar="TARGET",
                            help=f"where candidates are evaluated: {TARGET_SYNTAX} (default statevector)")
    objectives.add_argument("--shots", type=_int_at_least(1), metavar="N", help="shots per circuit on aer/runtime")
    objectives.add_argument("--max-concurrent-jobs", type=_int_at_least(1), default=1, metavar="N",
                            help="runtime/ibm targets: candidates' jobs in flight at once in the one Batch (default 1)")
    mitigation = search.add_argument_group(
        "IBM Runtime error suppression and mitigation (runtime:<fake backend> and ibm:<name> targets)")
    mitigation.add_argument("--resilience-level", type=_choice(("0", "1", "2")), metavar="{0,1,2}",
                            help="Runtime resilience level (default 0; 1: TREX readout mitigation with measurement "
                            "twirling, 2: also ZNE and gate twirling)")
    mitigation.add_argument("--twirling", type=_choice(TWIRLING_CHOICES),
                            metavar="{" + ",".join(TWIRLING_CHOICES) + "}",
                            help="Pauli twirling of two-qubit gates, measurements, both, or none (default: the "
                            "resilience level's)")
    mitigation.add_argument("--twirling-randomizations", type=_int_at_least(1), metavar="N",
                            help="twirled randomizations per circuit (default: Runtime's 'auto')")
    mitigation.add_argument("--dynamical-decoupling", type=_choice(DD_CHOICES),
                            metavar="{" + ",".join(DD_CHOICES) + "}",
                            help="insert this dynamical decoupling sequence in idle periods (default: off)")
    objectives.add_argument("--cut-time-limit", type=_positive_float, default=5.0, metavar="SECONDS",
                            help="cap on every cut-finding call (default 5)")
    objectives.add_argument("--cutting-objective", type=_choice(("subcircuits", "subexperiments", "overhead")),
                            default="subcircuits", metavar="{subcircuits,subexperiments,overhead}",
                            help="third objective (default subcircuits)")
    objectives.add_argument("--runtime-objective", type=_choice(("proxy", "measured")), default="proxy",
                            metavar="{proxy,measured}", help="second objective (default proxy)")
    objectives.add_argument("--selection", type=_choice(("min_error", "min_runtime", "min_subcircuits")),
                            default="min_error", metavar="{min_error,min_runtime,min_subcircuits}",
                            help="how the model is picked from the front (default min_error)")

    training = search.add_argument_group("search and training")
    for flag, low, default, text in (
            ("--population", 2, 12, "NSGA-II population (default 12)"),
            ("--generations", 1, 6, "NSGA-II generations (default 6)"),
            ("--supercircuit-epochs", 1, None, "SuperCircuit epochs (default: at least 600 optimiser steps)"),
            ("--finetune-epochs", 0, 5, "fine-tuning epochs per candidate (default 5)"),
            ("--finetune-samples", 2, 2048, "fine-tune each candidate on at most N training samples (default 2048)"),
            ("--final-epochs", 0, None, "fine-tuning epochs of the chosen model (default 2 x --finetune-epochs)")):
        training.add_argument(flag, type=_int_at_least(low), default=default, metavar="N", help=text)
    training.add_argument("--noise-aware", action="store_true",
                          help="train the SuperCircuit and the candidates under the target's injected gate and readout "
                               "errors (needs a noisy target: aer:<fake>, runtime:<fake>, ibm:<name>)")
    training.add_argument("--batch-size", type=_int_at_least(1), default=32, metavar="N", help="default 32")
    training.add_argument("--learning-rate", type=_positive_float, default=0.02, metavar="LR", help="default 0.02")
    training.add_argument("--seed", type=_int_at_least(0), default=0, metavar="N",
                          help="seed of the data split and the search (default 0)")
    search.add_argument("--out", type=Path, metavar="DIR",
                        help="run directory (default runs/<dataset>-<date>-<time>)")
    _add_execution_options(search)

    # --- resume / report / export ------------------------------------------------------------
    resume = commands.add_parser("resume", help="continue an interrupted run (or re-report a finished one)",
                                 description="Rebuild the estimator and data from DIR/config.json and fit again: "
                                 "the SuperCircuit and the search resume from their checkpoints.")
    resume.add_argument("run_dir", type=Path, metavar="DIR")
    resume.add_argument("--yes", action="store_true",
                        help="a run on a paid IBM backend (target ibm:<name>) resumes without asking for confirmation")
    _add_execution_options(resume)

    report = commands.add_parser("report", help="print the front, the test accuracy; (re)write pareto.png")
    report.add_argument("run_dir", type=Path, metavar="DIR")
    report.add_argument("--all", action="store_true", help="list every candidate, not only the front")
    report.add_argument("--on-target", action="store_true",
                        help="also score the chosen model on the test split with its quantum layer on the run's "
                        "target (its shots and seed); recorded in summary.json as test_accuracy_on_target")

    export = commands.add_parser("export", help="write the circuit of a front member (QPY or OpenQASM 3)",
                                 description="The circuit of front member K (the # column of `qnas report`) with "
                                 "its trained weights bound; inputs x stay parameters. By default the ISA circuit "
                                 "for the run's backend; --logical for the logical circuit.")
    export.add_argument("run_dir", type=Path, metavar="DIR")
    export.add_argument("--candidate", type=_int_at_least(0), metavar="K",
                        help="index in the front (default: the chosen candidate)")
    export.add_argument("--format", type=_choice(("qpy", "qasm3")), default="qpy", metavar="{qpy,qasm3}",
                        help="default qpy")
    export.add_argument("--logical", action="store_true", help="the logical circuit, not the ISA circuit")
    export.add_argument("--output", type=Path, metavar="PATH",
                        help="default DIR/candidate_K.qpy or .qasm; '-' writes the circuit to stdout. The path "
                        "written is printed on stderr")
    return parser


def _add_execution_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("execution")
    cluster = group.add_mutually_exclusive_group()
    cluster.add_argument("--dask-scheduler", metavar="ADDRESS",
                         help="evaluate candidates on a Dask cluster (e.g. tcp://host:8786)")
    cluster.add_argument("--workers", type=_int_at_least(1), metavar="N",
                         help="evaluate candidates on a local Dask cluster of N worker processes")
    group.add_argument("--max-memory", type=_memory, metavar="SIZE",
                       help="cap on the memory one candidate may need, e.g. 4GiB (default: the available memory)")
    group.add_argument("--quiet", action="store_true", help="no progress bars and no table")
    group.add_argument("--log-level", type=_choice(LOG_LEVELS, str.lower), default="warning",
                       metavar="{" + ",".join(LOG_LEVELS) + "}", help="default warning")


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _library_error(exc: Exception, default_flag: str | None = None) -> str:
    """A library error as a one-line CLI message: an :class:`~qiskit_qnas.validation.InvalidArgument`
    under the flag of its argument (``--flag: invalid value VALUE; allowed: ...``), any other error
    (scikit-learn's, Qiskit's, ...) as its text, after ``default_flag`` when given."""
    if isinstance(exc, InvalidArgument):
        flag = PARAM_FLAGS.get(exc.name, default_flag or f"--{exc.name.replace('_', '-')}")
        problem = exc.message if exc.message is not None else (
            f"invalid value {exc.value!r}{exc.context}; allowed: {exc.allowed}")
        return " ".join(f"{flag}: {problem}".split())
    message = " ".join(str(exc).split())
    return f"{default_flag}: {message}" if default_flag else message


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


def _write_json(path: Path, data: dict) -> None:
    from .result import atomic_write

    atomic_write(path, json.dumps(data, indent=1, default=str) + "\n")


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


@contextlib.contextmanager
def _executor(address: str | None = None, workers: int | None = None):
    """The Dask executor of ``--dask-scheduler`` / ``--workers`` (:func:`qiskit_qnas.parallel.dask_executor`,
    which imports Dask), or ``None`` for serial evaluation."""
    if address is None and workers is None:
        yield None
        return
    from .parallel import dask_executor

    with dask_executor(address=address, workers=workers) as executor:
        yield executor


def _check_dask(args) -> None:
    if getattr(args, "dask_scheduler", None) is None and getattr(args, "workers", None) is None:
        return
    import importlib.util

    if importlib.util.find_spec("dask") is None or importlib.util.find_spec("distributed") is None:
        flag = "--dask-scheduler" if args.dask_scheduler is not None else "--workers"
        raise UsageError(f"{flag}: needs Dask; allowed only with dask[distributed] installed "
                         "(pip install 'qiskit-qnas[dask]')")


# ------------------------------------------------------------------------------------------------
# building a run from settings (search and resume share this)
# ------------------------------------------------------------------------------------------------
def _dataset_settings(args) -> dict[str, Any]:
    if args.csv is not None:
        if not args.target_column:
            raise UsageError("--target-column: required with --csv; allowed: the name of a column of the CSV header")
        path = args.csv.expanduser().resolve()
        if not path.is_file():
            raise UsageError(f"--csv: invalid value {str(args.csv)!r}; allowed: an existing CSV file")
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if args.target_column not in header:
            raise UsageError(f"--target-column: invalid value {args.target_column!r}; allowed: "
                             f"{', '.join(header) or 'a column of the CSV header'}")
        settings = {"csv": str(path), "target_column": args.target_column}
    elif args.dataset is None:
        raise UsageError(f"--dataset: required (or --csv PATH --target-column NAME); allowed: {', '.join(DATASETS)}")
    else:
        if args.target_column:
            raise UsageError("--target-column: only with --csv; allowed: omit it with --dataset")
        settings = {"name": args.dataset}
    data_dir = None if args.data_dir is None else str(args.data_dir.expanduser().resolve())
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UsageError(f"--data-dir: invalid value {str(args.data_dir)!r}; allowed: an existing directory")
    settings.update(data_dir=data_dir, n_components=args.pca, image_size=args.image_size, subset=args.subset,
                    random_state=args.seed)
    return settings


def load_data(settings: dict[str, Any]):
    """The train/test split described by the ``dataset`` section of ``config.json``."""
    from . import datasets

    options = {k: settings.get(k) for k in ("data_dir", "n_components", "image_size", "subset")}
    options = {k: v for k, v in options.items() if v is not None}
    if "csv" in settings:
        return _call_accepting(datasets.load_csv, settings["csv"], settings["target_column"],
                               random_state=settings.get("random_state", 0), **options)
    return datasets.load_dataset(settings["name"], random_state=settings.get("random_state", 0), **options)


def _call_accepting(function, *args, **kwargs):
    """Call ``function`` with the keyword arguments its signature accepts (``None`` ones dropped)."""
    import inspect

    parameters = inspect.signature(function).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        unknown = [k for k in kwargs if k not in parameters]
        for key in unknown:
            if key != "random_state":
                raise UsageError(f"--{key.replace('_', '-')}: not supported with --csv; allowed: omit it")
            kwargs.pop(key)
    return function(*args, **kwargs)


def _settings_from_args(args) -> dict[str, Any]:
    from .space import SearchSpace

    space_args = {"qubits": args.qubits, "layers": args.layers, "embeddings": _flatten(args.embeddings),
                  "rotations": _flatten(args.rotations), "entanglers": _flatten(args.entanglers),
                  "ranges": args.ranges, "learning_rates": args.learning_rates}
    try:
        space = SearchSpace(**{k: v for k, v in space_args.items() if v is not None})
    except ValueError as exc:
        raise UsageError(_library_error(exc)) from None
    estimator = {
        "qubit_budget": args.qubit_budget, "shots": args.shots, "population_size": args.population,
        "n_generations": args.generations, "supercircuit_epochs": args.supercircuit_epochs,
        "finetune_epochs": args.finetune_epochs,
        "finetune_samples": args.finetune_samples, "final_epochs": args.final_epochs, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "cut_time_limit": args.cut_time_limit,
        "cutting_objective": args.cutting_objective, "runtime_objective": args.runtime_objective,
        "selection": args.selection, "random_state": args.seed, "max_concurrent_jobs": args.max_concurrent_jobs,
        "noise_aware": args.noise_aware,
    }
    runtime_options = _runtime_options(args)
    if runtime_options:
        estimator["runtime_options"] = runtime_options
    return {"dataset": _dataset_settings(args), "search_space": space.to_dict(), "target": args.target,
            "estimator": estimator}


def _runtime_options(args) -> dict[str, Any]:
    """``QNASEstimator(runtime_options=...)`` of the mitigation flags (only the flags given)."""
    options: dict[str, Any] = {}
    if args.resilience_level is not None:
        options["resilience_level"] = int(args.resilience_level)
    twirling: dict[str, Any] = {}
    if args.twirling is not None:
        twirling = {"enable_gates": args.twirling in ("gates", "all"),
                    "enable_measure": args.twirling in ("measure", "all")}
    if args.twirling_randomizations is not None:
        twirling["num_randomizations"] = args.twirling_randomizations
    if twirling:
        options["twirling"] = twirling
    if args.dynamical_decoupling is not None:
        options["dynamical_decoupling"] = {"enable": True, "sequence_type": args.dynamical_decoupling}
    if options and not args.target.startswith(("runtime:", "ibm:")):
        raise UsageError(f"--resilience-level/--twirling/--twirling-randomizations/--dynamical-decoupling: not "
                         f"supported with --target {args.target}; allowed: a Runtime target (runtime:<fake backend>, "
                         f"ibm:<name>)")
    return options


def make_estimator(config: dict[str, Any], run_dir: Path | None, verbose: int = 1, executor=None):
    """The :class:`QNASEstimator` of a run (backend resolved from the ``target`` setting)."""
    from .estimator import QNASEstimator
    from .space import SearchSpace

    backend, mode = target_backend(config["target"])
    return QNASEstimator(search_space=SearchSpace.from_dict(config["search_space"]), backend=backend,
                         target_mode=mode, checkpoint_dir=None if run_dir is None else str(run_dir),
                         verbose=verbose, executor=executor, **config["estimator"])


def prepare(config: dict[str, Any], max_memory: str | None = None):
    """Everything a run needs, checked: ``(estimator, dataset, fingerprint)``; raises :class:`UsageError`.

    The fingerprint identifies the run's settings and data (what every file of its directory records)."""
    from .noise import check_noise_aware_target

    try:
        estimator = make_estimator(config, None, verbose=0)
        estimator.set_params(max_memory=max_memory)
    except ValueError as exc:
        raise UsageError(_library_error(exc, "--target")) from None
    except Exception as exc:  # noqa: BLE001 - e.g. no saved IBM Quantum account, unknown backend
        raise UsageError(f"--target: cannot use {config['target']!r}: {' '.join(str(exc).split())}") from None
    try:
        estimator._check_params()
    except ValueError as exc:
        raise UsageError(_library_error(exc)) from None
    space = estimator._space()
    if config["target"] == "statevector" and estimator.shots is not None:
        raise UsageError(f"--shots: invalid value {estimator.shots} with --target statevector (exact simulation); "
                         "allowed: omit it, or a sampling target (aer, aer:<fake>, runtime:<fake>, ibm:<name>)")
    try:
        target = estimator.resolve_target()
    except ValueError as exc:
        message = _library_error(exc, "--target")
        raise UsageError(message if message.startswith("--") else f"--target: {message}") from None
    if estimator.noise_aware:
        try:
            check_noise_aware_target(target)
        except ValueError as exc:
            with contextlib.suppress(Exception):
                target.close()
            raise UsageError(f"--noise-aware: {' '.join(str(exc).split())} (--target {config['target']})") from None
    try:
        target.check_width(space.max_qubits, what=f"the widest candidate ({space.max_qubits} qubits)")
    except ValueError as exc:
        raise UsageError(f"--qubits: {' '.join(str(exc).split())} (--target {config['target']})") from None
    finally:
        with contextlib.suppress(Exception):
            target.close()
    flag = "--csv" if "csv" in config["dataset"] else "--dataset"
    try:
        data = load_data(config["dataset"])
    except UsageError:
        raise
    except (ValueError, OSError, KeyError) as exc:
        if isinstance(exc, OSError) and config["dataset"].get("data_dir") and "csv" not in config["dataset"]:
            flag = "--data-dir"
        message = _library_error(exc, flag)
        raise UsageError(message if message.startswith("--") else f"{flag}: {message}") from None
    try:  # the memory the widest candidate needs (training, validation, scoring the test split)
        plan = estimator._plan(data.X_train, data.y_train, n_predict=len(data.X_test))
    except ValueError as exc:
        raise UsageError(_library_error(exc, flag)) from None
    with contextlib.suppress(Exception):
        plan.target.close()
    return estimator, data, plan.fingerprint


def _check_directory(run_dir: Path, fingerprint: str, seed: int, flag: str) -> None:
    try:
        check_run_directory(run_dir, fingerprint, seed)
    except RunDirectoryError as exc:
        raise UsageError(f"{flag}: {exc}") from None


# ------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------
def _fit_and_score(estimator, data, run_dir: Path, args, started: float, fingerprint: str) -> int:
    with _executor(getattr(args, "dask_scheduler", None), getattr(args, "workers", None)) as executor:
        estimator.set_params(checkpoint_dir=str(run_dir), verbose=0 if args.quiet else 1, executor=executor)
        try:
            estimator.fit(data.X_train, data.y_train)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted; continue with: qnas resume {shlex.quote(str(run_dir))}", file=sys.stderr)
            return 130
    test_accuracy = float(estimator.score(data.X_test, data.y_test))
    result = estimator.result_
    best = estimator.best_candidate_
    front = result.pareto_front
    summary = {
        "test_accuracy": test_accuracy,
        "n_train": int(len(data.X_train)), "n_test": int(len(data.X_test)), "n_features": int(data.X_train.shape[1]),
        "dataset": getattr(data, "name", None),
        "chosen": best.architecture.key, "chosen_index": front.index(best),
        "chosen_objectives": dict(zip(result.objective_names, best.objectives)),
        "val_error": best.val_error, "n_candidates": len(result.candidates), "front_size": len(front),
        "timings": {**{k: float(v) for k, v in estimator.timings_.items()}, "total": time.perf_counter() - started},
        "command": [PROG, *args.argv],
        "command_line": shlex.join([PROG, *args.argv]),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint,
    }
    _write_json(run_dir / SUMMARY, summary)
    if not args.quiet:
        _print_report(run_dir, result, summary)
    return 0


def _print_report(run_dir: Path, result, summary: dict | None, front_only: bool = True) -> None:
    print(result.format_table(front_only=front_only))
    best = result.best
    if best is not None:
        print(f"chosen: {best.architecture.key}  (validation error {best.val_error:.4f})")
    if summary is not None:
        print(f"test accuracy: {summary['test_accuracy']:.4f}  ({summary.get('n_test', '?')} samples)")
        if "test_accuracy_on_target" in summary:
            print(f"test accuracy on {summary['on_target']}: {summary['test_accuracy_on_target']:.4f}")
    else:
        print("test accuracy: not scored yet (the run is not finished: `qnas resume DIR` completes it)")
    print(f"run directory: {run_dir}")


def cmd_search(args) -> int:
    _check_dask(args)
    config = _settings_from_args(args)
    run_dir = args.out
    if run_dir is None:
        name = config["dataset"].get("name") or Path(config["dataset"]["csv"]).stem
        run_dir = Path("runs") / f"{name}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / CONFIG).exists():
        raise UsageError(f"--out: invalid value {str(run_dir)!r}: it already holds a run; allowed: a new or empty "
                         f"directory (continue that run with `qnas resume {run_dir}`)")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out: invalid value {str(run_dir)!r}; allowed: a directory path")
    started = time.perf_counter()
    estimator, data, fingerprint = prepare(config, args.max_memory)
    # a directory another run wrote (the Python API writes no config.json) is refused untouched
    _check_directory(run_dir, fingerprint, estimator.random_state, "--out")
    from ._version import __version__

    config = {"format": CONFIG_FORMAT, "version": __version__, **config,
              "command": [PROG, *args.argv], "fingerprint": fingerprint,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / CONFIG, config)
    logger.info("run directory %s", run_dir)
    return _fit_and_score(estimator, data, run_dir, args, started, fingerprint)


#: the sections of config.json and the type each must have
CONFIG_SECTIONS = {"dataset": dict, "search_space": dict, "target": str, "estimator": dict}


def _load_config(run_dir: Path) -> dict[str, Any]:
    _run_dir(run_dir)
    from .estimator import QNASEstimator

    config = _read_json(run_dir / CONFIG)
    if config.get("format") != CONFIG_FORMAT or not all(
            isinstance(config.get(k), kind) for k, kind in CONFIG_SECTIONS.items()) or not (
            set(config["estimator"]) <= set(QNASEstimator().get_params())):
        raise UsageError(f"DIR: {run_dir / CONFIG}: is not a qnas run configuration of format {CONFIG_FORMAT}; fix: "
                         f"restore it, or start a new run in another directory")
    return config


def _confirm_paid_backend(run_dir: Path, config: dict[str, Any], assume_yes: bool) -> None:
    """A run on an IBM backend spends its account's quota: show the backend and what the rest of
    the search may submit, and ask (``--yes`` answers for a script; no terminal: refused)."""
    if not config["target"].startswith("ibm:"):
        return
    from .estimator import QNASEstimator
    from .targets import DEFAULT_RUNTIME_SHOTS

    try:
        settings = QNASEstimator(**config["estimator"])
        settings._check_params()
        data = load_data(config["dataset"])
        remaining = max(0, int(settings.n_generations) - completed_generations(run_dir))
    except (TypeError, ValueError, OSError, KeyError, RunDirectoryError) as exc:
        raise UsageError(f"DIR: {run_dir / CONFIG}: cannot estimate the run's budget "
                         f"({' '.join(str(exc).split())}); fix: restore the file, or start a new run") from None
    n_val = settings._n_val(len(data.X_train), len(set(data.y_train.tolist())))
    jobs = remaining * int(settings.population_size)
    shots = jobs * n_val * int(settings.shots or DEFAULT_RUNTIME_SHOTS)
    print(f"{PROG}: {run_dir} runs on the paid backend {config['target']}: {remaining} generations remain, up to "
          f"{jobs} jobs and {shots} shots ({settings.population_size} candidates x {n_val} circuits x "
          f"{settings.shots or DEFAULT_RUNTIME_SHOTS} shots per generation)", file=sys.stderr)
    if assume_yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"--yes: required to resume a run on the paid backend {config['target']} without a terminal "
                         "to confirm it; allowed: --yes, or run it in a terminal")
    print("continue? [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise UsageError(f"--yes: not confirmed; nothing was submitted to {config['target']}")


def cmd_resume(args) -> int:
    from .search import read_checkpoint

    run_dir = args.run_dir
    config = _load_config(run_dir)
    try:  # an older (pickled) or damaged checkpoint is reported before the run is set up
        read_checkpoint(run_dir)
    except ValueError as exc:
        raise UsageError(f"DIR: {' '.join(str(exc).split())}") from None
    if (run_dir / SUMMARY).exists() and (run_dir / RESULT).exists():
        _load_result(run_dir)  # a damaged file is reported, even with --quiet
        _read_json(run_dir / SUMMARY)
        if not args.quiet:
            print(f"{PROG}: the run is complete; nothing to resume", file=sys.stderr)
            return cmd_report(args)
        return 0
    _check_dask(args)
    _confirm_paid_backend(run_dir, config, args.yes)
    started = time.perf_counter()
    estimator, data, fingerprint = prepare(config, args.max_memory)
    _check_directory(run_dir, fingerprint, estimator.random_state, "DIR")
    return _fit_and_score(estimator, data, run_dir, args, started, fingerprint)


def _load_result(run_dir: Path):
    try:
        return load_result(run_dir)
    except RunDirectoryError as exc:
        raise UsageError(f"DIR: {exc}") from None


def on_target_accuracy(run_dir: Path) -> tuple[float, str]:
    """Test accuracy of a finished run's chosen model (``model.pt``) with its quantum layer on the
    run's target, and the target's name: the target is resolved from ``config.json`` as the search
    resolved it; the pre-layer and head run in torch
    (:func:`qiskit_qnas.objectives.target_logits`)."""
    import numpy as np

    from .model import HQNN
    from .objectives import target_logits
    from .space import Architecture

    _run_dir(run_dir, MODEL)
    estimator, data, _ = prepare(_load_config(run_dir))
    try:
        saved = read_tensors(run_dir / MODEL)
    except RunDirectoryError as exc:
        raise UsageError(f"DIR: {exc}") from None
    mean, std, classes = np.asarray(saved["mean"]), np.asarray(saved["std"]), np.asarray(saved["classes"])
    model = HQNN(Architecture.from_dict(saved["architecture"]), len(mean), len(classes), hidden=estimator.hidden,
                 dropout=estimator.dropout)
    model.load_state_dict(saved["state"])
    X = ((np.asarray(data.X_test, dtype=np.float64) - mean) / std).astype(np.float32)
    with estimator.resolve_target() as target:
        logits = target_logits(model, target, X)
        name = target.name
    return float(np.mean(classes[logits.argmax(1)] == np.asarray(data.y_test))), name


def cmd_report(args) -> int:
    run_dir = _run_dir(args.run_dir, RESULT)
    result = _load_result(run_dir)
    summary = _read_json(run_dir / SUMMARY) if (run_dir / SUMMARY).exists() else None
    if getattr(args, "on_target", False):
        if summary is None:
            raise UsageError("--on-target: the run is not finished (no summary.json: `qnas resume DIR` completes "
                             "it); allowed: a finished run")
        summary["test_accuracy_on_target"], summary["on_target"] = on_target_accuracy(run_dir)
        _write_json(run_dir / SUMMARY, summary)
    result.plot_pareto(run_dir / "pareto.png")
    import matplotlib.pyplot as plt

    plt.close("all")
    _print_report(run_dir, result, summary, front_only=not getattr(args, "all", False))
    return 0


def export_backend(config: dict[str, Any]):
    """The backend whose ISA circuits a run's exports are: its target's backend (the reference
    backend of ``resolve_target(None)`` for exact runs)."""
    from .targets import resolve_target

    backend, mode = target_backend(config["target"])
    return resolve_target(backend, mode=mode).backend


def cmd_export(args) -> int:
    run_dir = _run_dir(args.run_dir, RESULT)
    result = _load_result(run_dir)
    front = result.pareto_front
    if args.candidate is None:
        if result.best is None:
            raise UsageError("--candidate: required (the run has no chosen candidate); "
                             f"allowed: 0..{len(front) - 1}")
        index = front.index(result.best)
    else:
        index = args.candidate
    if not 0 <= index < len(front):
        raise UsageError(f"--candidate: invalid value {index}; allowed: 0..{len(front) - 1} (the # column of "
                         "`qnas report`)")
    output = args.output or run_dir / f"candidate_{index}.{'qpy' if args.format == 'qpy' else 'qasm'}"
    backend = None
    optimization_level = 1
    if not args.logical:
        config = _load_config(run_dir)
        optimization_level = int(config.get("estimator", {}).get("optimization_level", 1))
        try:
            backend = export_backend(config)
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"--logical: the run's backend ({config['target']}) is not available "
                             f"({' '.join(str(exc).split())}); allowed: --logical for the logical circuit") from None
    if str(output) == "-":  # the circuit itself on stdout
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = result.export(Path(tmp) / "circuit", index=index, format=args.format, backend=backend,
                                 optimization_level=optimization_level)
            data = path.read_bytes()
        sys.stdout.flush()
        stream = getattr(sys.stdout, "buffer", None)
        if stream is not None:
            stream.write(data)
            stream.flush()
        else:
            sys.stdout.write(data.decode("latin-1") if args.format == "qpy" else data.decode())
        return 0
    path = result.export(output, index=index, format=args.format, backend=backend,
                         optimization_level=optimization_level)
    # the path goes to stderr: stdout stays free for data (``--output -``)
    print(path, file=sys.stderr)
    return 0


COMMANDS = {"search": cmd_search, "resume": cmd_resume, "report": cmd_report, "export": cmd_export}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qnas`` console script; returns the exit code (2 for a bad command line)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    with configure_logging(getattr(args, "log_level", "warning")):
        try:
            return COMMANDS[args.command](args)
        except UsageError as exc:
            parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
