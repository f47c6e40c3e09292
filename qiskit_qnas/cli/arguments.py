"""The ``qnas`` parser: its arguments, their types, and the flags library errors are reported under.

Every argument is checked as it is parsed: a bad one ends the command with exit code 2 and one line
``qnas: error: <argument>: invalid value ...; allowed: ...`` on stderr (:class:`UsageError` for
what is found after parsing). :func:`_library_error` words an error the library raises for an
argument under the flag that sets it (:data:`PARAM_FLAGS`), from the attributes of its
:class:`~qiskit_qnas.validation.InvalidArgument`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..backends import TARGET_SYNTAX, target_spec
from ..datasets import DATASETS
from ..qpu_budget import FIDELITIES
from ..selection import SELECTIONS
from ..validation import InvalidArgument
from .signals import PROG

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
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
    "runtime_objective": "--runtime-objective", "selection": "--selection", "reevaluations": "--reevaluations",
    "qubits": "--qubits",
    "layers": "--layers", "embeddings": "--embeddings", "embedding": "--embeddings", "rotations": "--rotations",
    "rotation": "--rotations", "entanglers": "--entanglers", "entangler": "--entanglers", "ranges": "--ranges",
    "learning_rates": "--learning-rates", "n_qubits": "--qubits", "n_components": "--pca",
    "image_size": "--image-size", "subset": "--subset", "data_dir": "--data-dir", "target_column": "--target-column",
    "backend": "--target", "mode": "--target", "target_mode": "--target", "seed": "--seed",
    "random_state": "--seed", "name": "--dataset", "path": "--csv", "noise_aware": "--noise-aware",
    "hidden": "--hidden", "head": "--head", "output_norm": "--output-norm",
    "max_memory": "--max-memory", "max_qpu_seconds": "--max-qpu-seconds", "fidelity": "--fidelity",
}


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


def _path(text: str) -> Path:
    """A path from the command line, ``~`` expanded (also in ``--out=~/x``, which the shell leaves alone)."""
    return Path(text).expanduser()


def _finite_float(allowed: str, low: float = 0.0, inclusive: bool = False):
    """A parser of a finite number above ``low`` (or equal to it, ``inclusive``), refused with ``allowed``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _invalid(text, allowed) from None
        if not math.isfinite(value) or not (value >= low if inclusive else value > low):
            raise _invalid(text, allowed)
        return value

    parse.__name__ = allowed
    return parse


_positive_float = _finite_float("a positive number")
_qpu_seconds = _finite_float("a number of device seconds >= 0", inclusive=True)


def _memory(text: str) -> str:
    from ..memory import MEMORY_SYNTAX, parse_memory

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



def _hidden(text: str):
    """``--hidden``: ``none``, a width ``N``, widths ``N,M,...``, or ``cnn`` / ``cnn-C1-...-Ck-D``
    (checked by :func:`qiskit_qnas.model.check_hidden`)."""
    from ..model import check_hidden

    value: Any = text
    if text.lower() == "none":
        value = None
    elif all(part.strip().isdigit() for part in text.split(",")):
        widths = [int(part) for part in text.split(",")]
        value = widths[0] if len(widths) == 1 else tuple(widths)
    try:
        return check_hidden(value, allow_zero=False)
    except InvalidArgument:
        raise _invalid(text, "none (no trainable layer before the circuit), a width N >= 1, widths N,M,..., "
                       "or cnn / cnn-C1-...-Ck-D") from None


def _target_spec(text: str) -> str:
    """``--target``: checked and normalised by :func:`qiskit_qnas.backends.target_spec`."""
    try:
        return target_spec(text)
    except InvalidArgument as exc:
        raise _invalid(exc.value, exc.allowed) from None


# ------------------------------------------------------------------------------------------------
# the parser
# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from ..space import EMBEDDINGS, ENTANGLERS, ROTATIONS

    parser = _Parser(prog=PROG, description="Quantum neural architecture search (QNAS) for Qiskit: train a "
                     "weight-sharing SuperCircuit, search it with NSGA-II on validation error, runtime and "
                     "circuit-cutting cost.")
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"qiskit-qnas {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # --- search ---------------------------------------------------------------------------------
    search = commands.add_parser("search", help="run a search and write a run directory",
                                 description="Train the SuperCircuit, run NSGA-II, fine-tune the chosen model and "
                                 "score it on the test split. Writes DIR/config.json first; `qnas resume DIR` "
                                 "continues an interrupted run.")
    data = search.add_argument_group("data")
    source = data.add_mutually_exclusive_group()
    source.add_argument("--dataset", type=_choice(DATASETS, lambda name: name.lower().replace("-", "_")),
                        metavar="NAME", help=f"a built-in dataset: {', '.join(DATASETS)}")
    source.add_argument("--csv", type=_path, metavar="PATH", help="a CSV file with a header row")
    data.add_argument("--target-column", metavar="NAME", help="the label column of --csv")
    data.add_argument("--data-dir", type=_path, metavar="DIR", help="where dataset files are (IDX files for mnist)")
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
    objectives.add_argument("--max-qpu-seconds", type=_qpu_seconds, metavar="SECONDS",
                            help="budget of device seconds (as IBM bills them) for what the search submits to a device "
                            "(runtime:<fake>, ibm:<name>): estimated and printed before any job, refused when its "
                            "first step does not fit, never exceeded (the search stops; resume with a larger one)")
    objectives.add_argument("--fidelity", type=_choice(FIDELITIES), default="auto", metavar="{" + ",".join(FIDELITIES)
                            + "}", help="on a device: multi (auto's choice) measures every candidate on the device's "
                            "emulation and the leader and its near-ties on the device; target measures all on it")
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
    objectives.add_argument("--selection", type=_choice(tuple(SELECTIONS)), default="min_error",
                            metavar="{" + ",".join(SELECTIONS) + "}",
                            help="how the model is picked from the front (default min_error)")
    objectives.add_argument("--reevaluations", type=_int_at_least(0), default=3, metavar="N",
                            help="min_error: re-measure up to N candidates before choosing (the leader, then those "
                                 "within a standard error of it; default 3; 0: off)")

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
    training.add_argument("--hidden", type=_hidden, default=64, metavar="{N,none,cnn}",
                          help="classical pre-layer: its width (default 64), widths N,M,..., cnn / cnn-C1-...-Ck-D "
                          "(square images), or none: the features enter the circuit through a fixed map fitted on "
                          "the training split (one to one, or their leading principal components)")
    training.add_argument("--head", type=_choice(("linear", "none")), default="linear", metavar="{linear,none}",
                          help="linear (default): a trained Linear from every qubit's <Z> to the logits; none: the "
                          "<Z> of the first n_classes qubits are the class scores")
    training.add_argument("--output-norm", type=_choice(("on", "off")), metavar="{on,off}",
                          help="QuantumNAT's post-measurement normalisation of every qubit's <Z> before the head "
                          "(default: on with --noise-aware, off otherwise)")
    training.add_argument("--batch-size", type=_int_at_least(1), default=32, metavar="N", help="default 32")
    training.add_argument("--learning-rate", type=_positive_float, default=0.02, metavar="LR", help="default 0.02")
    training.add_argument("--seed", type=_int_at_least(0), default=0, metavar="N",
                          help="seed of the data split and the search (default 0)")
    search.add_argument("--out", type=_path, metavar="DIR",
                        help="run directory (default runs/<dataset>-<date>-<time>)")
    search.add_argument("--dry-run", action="store_true",
                        help="check every setting and print the QPU plan (what the search would submit to a device), "
                        "then stop: nothing is trained, submitted or written")
    _add_execution_options(search)

    # --- resume / report / export ------------------------------------------------------------
    resume = commands.add_parser("resume", help="continue an interrupted run (or re-report a finished one)",
                                 description="Rebuild the estimator and data from DIR/config.json and fit again: "
                                 "the SuperCircuit and the search resume from their checkpoints.")
    resume.add_argument("run_dir", type=_path, metavar="DIR")
    resume.add_argument("--yes", action="store_true",
                        help="a run on a paid IBM backend (target ibm:<name>) resumes without asking for confirmation")
    resume.add_argument("--max-qpu-seconds", type=_qpu_seconds, metavar="SECONDS",
                        help="a new QPU budget for the run (a search stopped at its budget goes on with a larger one)")
    _add_execution_options(resume)

    report = commands.add_parser("report", help="print the front, the test accuracy (and pareto.png if missing)")
    report.add_argument("run_dir", type=_path, metavar="DIR")
    report.add_argument("--all", action="store_true", help="list every candidate, not only the front (# is the "
                        "front index that export --candidate takes; - off the front)")
    report.add_argument("--on-target", nargs="?", const=True, default=False, type=_target_spec, metavar="TARGET",
                        help="also score the chosen model on the test split with its quantum layer on the run's "
                        "target (its shots and seed), or on TARGET (e.g. runtime:fez, aer:manila), within what is "
                        "left of the run's QPU budget; recorded in summary.json as test_accuracy_on_target")

    export = commands.add_parser("export", help="write the circuit of a front member (QPY or OpenQASM 3)",
                                 description="The circuit of front member K (the # column of `qnas report`) with "
                                 "its trained weights bound; inputs x stay parameters. By default the ISA circuit "
                                 "for the run's backend; --logical for the logical circuit.")
    export.add_argument("run_dir", type=_path, metavar="DIR")
    export.add_argument("--candidate", type=_int_at_least(0), metavar="K",
                        help="index in the front (default: the chosen candidate)")
    export.add_argument("--format", type=_choice(("qpy", "qasm3")), default="qpy", metavar="{qpy,qasm3}",
                        help="default qpy")
    export.add_argument("--logical", action="store_true", help="the logical circuit, not the ISA circuit")
    export.add_argument("--output", type=_path, metavar="PATH",
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
# library errors under their flags
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
