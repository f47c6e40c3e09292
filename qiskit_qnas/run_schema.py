"""What the JSON files of a run directory may hold: the type and range of every field, checked before
anything is built from them.

A run directory may come from anyone (``SECURITY.md``), so its files are data to check, not to trust:
a field of the wrong type, a NaN or an infinity where a finite number belongs, a count of ``10**30``,
an index out of range or a missing key would otherwise surface as a traceback deep in a command, or
make the library build something absurd (a billion-layer circuit). :func:`check` refuses such a file
with one line naming the field (:class:`RunFileError`, a ``ValueError``); the sizes it accepts are
the library's own limits (:data:`~qiskit_qnas.spec.MAX_QUBITS`, :data:`~qiskit_qnas.spec.MAX_LAYERS`).

A schema is a function ``(value, where) -> None``: built from :func:`number`, :func:`integer`,
:func:`text`, :func:`boolean`, :func:`optional`, :func:`choice`, :func:`array`, :func:`mapping` and
:func:`record`. Keys a record does not name are allowed (a file written by a newer version); keys it
names as optional may be missing (a file written by an older one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .spec import EMBEDDINGS, ENTANGLERS, MAX_LAYERS, MAX_QUBITS, ROTATIONS

Schema = Callable[[Any, str], None]

#: no number a run records comes near this (a larger one is damage, not a measurement)
HUGE = 1e250
#: the largest count or index a run records (an index-sized integer)
MAX_COUNT = 2**53
#: seconds: a century
MAX_SECONDS = 3.2e9
#: the longest text field (a candidate's error message, a command line)
MAX_TEXT = 100_000


class RunFileError(ValueError):
    """A run file's field that is not what the file format allows (one line: where and what)."""


def _refuse(where: str, expected: str, value: Any) -> RunFileError:
    shown = repr(value)
    return RunFileError(f"{where or 'the file'} is {shown[:60]}{'...' if len(shown) > 60 else ''}, "
                        f"expected {expected}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(low: float = -HUGE, high: float = HUGE, *, infinite: bool = False) -> Schema:
    """A finite int or float in ``[low, high]`` (``infinite``: +inf allowed too, never NaN)."""
    expected = f"a number in [{low:g}, {high:g}]" + (" or Infinity" if infinite else "")

    def check_number(value: Any, where: str) -> None:
        if not _is_number(value) or math.isnan(value) or not (
                low <= value <= high or (infinite and value == math.inf)):
            raise _refuse(where, expected, value)
    return check_number


def real(low: float = -HUGE, high: float = HUGE) -> Schema:
    """A finite float (not an int) in ``[low, high]``."""
    def check_real(value: Any, where: str) -> None:
        if not isinstance(value, float) or not low <= value <= high:
            raise _refuse(where, f"a decimal number in [{low:g}, {high:g}]", value)
    return check_real


def integer(low: int = 0, high: int = MAX_COUNT) -> Schema:
    def check_integer(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _refuse(where, f"an integer in [{low}, {high}]", value)
    return check_integer


def text(max_length: int = MAX_TEXT) -> Schema:
    def check_text(value: Any, where: str) -> None:
        if not isinstance(value, str) or len(value) > max_length:
            raise _refuse(where, f"a string of at most {max_length} characters", value)
    return check_text


def boolean() -> Schema:
    def check_boolean(value: Any, where: str) -> None:
        if not isinstance(value, bool):
            raise _refuse(where, "true or false", value)
    return check_boolean


def optional(schema: Schema) -> Schema:
    """``null`` or what ``schema`` allows."""
    def check_optional(value: Any, where: str) -> None:
        if value is not None:
            schema(value, where)
    return check_optional


def choice(*allowed: Any) -> Schema:
    def check_choice(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (str, int, float, type(None))) or value not in allowed:
            raise _refuse(where, f"one of {', '.join(map(repr, allowed))}", value)
    return check_choice


def any_of(*schemas: Schema, expected: str) -> Schema:
    def check_any(value: Any, where: str) -> None:
        for schema in schemas:
            try:
                schema(value, where)
                return
            except RunFileError:
                continue
        raise _refuse(where, expected, value)
    return check_any


def array(item: Schema, min_length: int = 0, max_length: int = 1_000_000) -> Schema:
    def check_array(value: Any, where: str) -> None:
        if not isinstance(value, list) or not min_length <= len(value) <= max_length:
            raise _refuse(where, f"a list of {min_length} to {max_length} items", value)
        for index, element in enumerate(value):
            item(element, f"{where}[{index}]")
    return check_array


def fixed(*items: Schema) -> Schema:
    """A list of ``len(items)`` values, each as its schema allows."""
    def check_fixed(value: Any, where: str) -> None:
        if not isinstance(value, list) or len(value) != len(items):
            raise _refuse(where, f"a list of {len(items)} items", value)
        for index, (element, item) in enumerate(zip(value, items)):
            item(element, f"{where}[{index}]")
    return check_fixed


def consistent(schema: Schema, holds: Callable[[Any], bool], expected: str) -> Schema:
    """What ``schema`` allows and ``holds`` accepts (a relation between its fields)."""
    def check_consistent(value: Any, where: str) -> None:
        schema(value, where)
        if not holds(value):
            raise _refuse(where, expected, value)
    return check_consistent


def mapping(value_schema: Schema) -> Schema:
    """An object of any keys whose values ``value_schema`` allows."""
    def check_mapping(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _refuse(where, "an object", value)
        for key, element in value.items():
            value_schema(element, f"{where}.{key}" if where else key)
    return check_mapping


def record(required: Mapping[str, Schema], optional_keys: Mapping[str, Schema] | None = None) -> Schema:
    """An object with every ``required`` key and any of ``optional_keys``, each as its schema allows."""
    optional_keys = dict(optional_keys or {})

    def check_record(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _refuse(where, "an object", value)
        for key in required:
            if key not in value:
                raise RunFileError(f"{where + '.' if where else ''}{key} is missing")
        for key, schema in (*required.items(), *optional_keys.items()):
            if key in value:
                schema(value[key], f"{where}.{key}" if where else key)
    return check_record


def check(schema: Schema, data: Any) -> None:
    """Raise :class:`RunFileError` unless ``schema`` allows ``data`` (a parsed JSON file)."""
    schema(data, "")


# --- the fields the files share ------------------------------------------------------------------------
SECONDS = number(0, MAX_SECONDS)
FRACTION = number(0, 1)
COUNT = integer()
#: a setting as recorded (an estimator parameter, a Runtime option): a JSON scalar or a list of them
_SCALAR = any_of(optional(text()), boolean(), integer(-MAX_COUNT, MAX_COUNT), real(),
                 expected="a string, a number of at most 2**53, a boolean or null")
SETTING = any_of(_SCALAR, array(_SCALAR), expected="a string, a number of at most 2**53, a boolean, null or a list "
                                                  "of them")

_LAYERED_ENTANGLER = any_of(choice(*ENTANGLERS), array(choice(*ENTANGLERS), 1, MAX_LAYERS),
                            expected="an entangler or a list of one per layer")
_LAYERED_RANGE = any_of(integer(1, MAX_QUBITS - 1), array(integer(1, MAX_QUBITS - 1), 1, MAX_LAYERS),
                        expected="a range or a list of one per layer")
ARCHITECTURE = record({"n_qubits": integer(1, MAX_QUBITS), "n_layers": integer(1, MAX_LAYERS),
                       "embedding": choice(*EMBEDDINGS), "rotation": choice(*ROTATIONS),
                       "entangler": _LAYERED_ENTANGLER, "entangle_range": _LAYERED_RANGE},
                      {"learning_rate": optional(number(0, 1e6))})
_BOUNDS = any_of(integer(1, MAX_QUBITS), array(integer(1, MAX_QUBITS), 2, 2),
                 expected="an integer or a (min, max) pair")
SEARCH_SPACE = record({"qubits": _BOUNDS, "layers": _BOUNDS, "embeddings": array(choice(*EMBEDDINGS), 1, 16),
                       "rotations": array(choice(*ROTATIONS), 1, 16), "entanglers": array(choice(*ENTANGLERS), 1, 16),
                       "ranges": _BOUNDS}, {"learning_rates": optional(array(number(0, 1e6), 2, 2))})
MEASUREMENT = record({"source": text(1000), "kind": choice("emulator", "device", "simulator"),
                      "val_error": FRACTION, "n_samples": COUNT, "shots": optional(integer(1)),
                      "qpu_seconds": SECONDS})
RUNTIME_ESTIMATE = record({"seconds": number(0), "critical_path_seconds": number(0), "depth": COUNT,
                           "two_qubit_depth": COUNT, "n_two_qubit_gates": COUNT, "shots": COUNT,
                           "n_circuits": COUNT, "backend_name": text(1000)},
                          {"executions_per_circuit": COUNT, "calibration_executions": COUNT,
                           "rep_delay": SECONDS, "n_jobs": COUNT, "job_overhead": SECONDS})
_CUT = any_of(fixed(choice("wire"), COUNT, COUNT), fixed(choice("gate"), COUNT, text(100)),
              expected='["wire", instruction, qubit] or ["gate", instruction, gate name]')
CUTTING_COST = consistent(record(
    {"n_subexperiments": integer(0, 10**250), "n_subcircuits": COUNT, "n_pieces": COUNT,
     "sampling_overhead": optional(number(0)), "exact": boolean(), "cuts": array(_CUT), "n_gate_cuts": COUNT,
     "n_wire_cuts": COUNT, "seconds": SECONDS, "qubit_budget": COUNT, "n_qubits": integer(1, MAX_QUBITS),
     "partition_widths": array(COUNT), "packing": array(array(COUNT)), "n_qpd_terms": integer(0, 10**250),
     "n_observable_groups": COUNT, "log10_subexperiments": number(0), "log10_sampling_overhead": number(0),
     "stopped_by": optional(text(1000))},
    {"search_overhead": optional(number(0))}),
    # the exact counts agree with their logarithms, which the objectives use
    lambda cost: cost["n_qpd_terms"] <= max(cost["n_subexperiments"], 1) and (
        cost["n_subexperiments"] == 0
        or abs(math.log10(cost["n_subexperiments"]) - cost["log10_subexperiments"]) < 1e-6),
    "a cutting cost whose n_subexperiments is 10**log10_subexperiments and at least n_qpd_terms")


def _empty(value: Any, where: str) -> None:  # ``{}``: what results written before these were typed hold for "none"
    if value != {}:
        raise _refuse(where, "{}", value)


CANDIDATE = record(
    {"architecture": ARCHITECTURE, "val_error": FRACTION, "runtime_proxy": number(0, HUGE),
     "n_subcircuits": COUNT, "objectives": array(number(-HUGE, HUGE, infinite=True), 1, 16)},
    {"val_accuracy": optional(FRACTION), "val_loss": optional(number(0)), "val_errors": array(FRACTION),
     "weights": array(number(-1e6, 1e6), 0, MAX_QUBITS * MAX_LAYERS * 3),
     "runtime": optional(any_of(RUNTIME_ESTIMATE, _empty, expected="a runtime estimate")),
     "cutting": optional(any_of(CUTTING_COST, _empty, expected="a cutting cost")),
     "measured_seconds": optional(SECONDS), "job_seconds": optional(SECONDS), "finetune_seconds": SECONDS,
     "attempts": COUNT, "generation": COUNT, "failed": boolean(), "error": optional(text()),
     "qpu_seconds": SECONDS, "measurements": array(MEASUREMENT)})
#: one generation of the search's history (:func:`qiskit_qnas.search.run_nsga2`)
GENERATION = record({"generation": integer(1), "n_evaluated": COUNT, "n_new": COUNT,
                     "best_val_error": optional(FRACTION), "n_failed": COUNT})
PLAN_ITEM = record({"what": text(1000), "evaluations": COUNT, "circuits": COUNT, "shots": COUNT, "seconds": SECONDS})
QPU_PLAN = record({"device": text(1000), "fidelity": choice("target", "multi"), "seconds": SECONDS,
                   "items": array(PLAN_ITEM)},
                  {"first_step": text(1000), "first_step_seconds": SECONDS, "max_qpu_seconds": optional(SECONDS)})
RESULT_CONFIG = record({}, {
    "search_space": SEARCH_SPACE, "target": text(1000), "seed": optional(COUNT), "fingerprint": optional(text(100)),
    "n_features": integer(1), "runtime_options": mapping(SETTING), "classes": array(SETTING, 0, 100_000),
    "params": mapping(SETTING), "version": text(100), "fidelity": choice("target", "multi"),
    "qpu_plan": optional(QPU_PLAN), "stopped": optional(text()), "timings": mapping(SECONDS)})
#: ``result.json``: :meth:`qiskit_qnas.result.SearchResult.to_dict`
RESULT = record({"objective_names": array(text(100), 2, 16), "candidates": array(CANDIDATE, 1)},
                {"chosen": optional(COUNT), "config": RESULT_CONFIG, "history": array(GENERATION)})
#: ``summary.json``: what ``qnas search`` / ``resume`` record once the chosen model is scored
SUMMARY = record(
    {"test_accuracy": FRACTION, "n_test": COUNT, "chosen": text(1000), "val_error": FRACTION},
    {"n_train": COUNT, "n_features": COUNT, "dataset": optional(text(1000)), "chosen_index": COUNT,
     "chosen_objectives": mapping(number(-HUGE, HUGE)), "n_candidates": COUNT, "front_size": COUNT,
     "qpu_seconds": SECONDS,
     "stopped": optional(text()), "timings": mapping(SECONDS), "command": array(text()), "command_line": text(),
     "finished": text(100), "fingerprint": text(100), "test_accuracy_on_target": FRACTION, "on_target": text(1000)})
POPULATION_MEMBER = record({"gene": mapping(SETTING), "objectives": array(number(-HUGE, HUGE, infinite=True), 1, 16),
                            "rank": COUNT, "crowding": number(0, HUGE, infinite=True)})
#: ``checkpoint.json``: :func:`qiskit_qnas.search.save_checkpoint`
CHECKPOINT = record({"fingerprint": optional(text(100)), "search_space": SEARCH_SPACE, "population_size": integer(1),
                     "seed": integer(0, 2**32 - 1), "generation": integer(1), "history": array(GENERATION, 1),
                     "candidates": array(CANDIDATE), "population": array(POPULATION_MEMBER, 1),
                     "random_state": record({"bit_generator": choice("PCG64"),
                                             "state": record({"state": integer(0, 2**128 - 1),
                                                              "inc": integer(0, 2**128 - 1)}),
                                             "has_uint32": integer(0, 1), "uinteger": integer(0, 2**32 - 1)})})

__all__ = ["ARCHITECTURE", "CANDIDATE", "CHECKPOINT", "HUGE", "RESULT", "RunFileError", "SEARCH_SPACE", "SUMMARY",
           "any_of", "array", "boolean", "check", "choice", "consistent", "fixed", "integer", "mapping", "number",
           "optional", "real", "record", "text"]
