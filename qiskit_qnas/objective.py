"""The objectives a search minimises, as values: what each is called, where it is read, how it is drawn.

An :class:`Objective` is one minimised column of the results. It carries

* its ``name``, the key results are stored under (``SearchResult.objective_names``, the
  ``objective_<name>`` columns of ``candidates.csv``);
* a ``label`` and a ``unit`` for plots and reports (``runtime proxy (s)``);
* whether its values count things (integer ticks) and whether they are the log10 of a count that
  spans decades (drawn as the count itself on a log axis);
* ``failed_value``, what a candidate whose evaluation failed scores: never better than a real one;
* ``source``, the attribute path its value is read from in a candidate's :class:`Measurements`
  (``runtime.seconds``). A :class:`~qiskit_qnas.result.Candidate` has the same attributes, so an
  objective reads a stored candidate too.

:func:`search_objectives` builds the list a search minimises from the estimator's settings
``runtime_objective`` and ``cutting_objective``: validation error, a runtime and a cutting cost, in
that order.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .cutting import CuttingCost
from .runtime_proxy import RuntimeEstimate
from .validation import check_choice


@dataclass(frozen=True)
class Measurements:
    """What the evaluation of one candidate measured: everything an objective is read from.

    Attributes:
        val_error: ``1 - accuracy`` on the validation split, on the search's target.
        runtime: the candidate's runtime proxy and its ingredients.
        measured_seconds: wall clock of the validation evaluation on the target.
        cutting: the candidate's circuit-cutting cost under the qubit budget.
    """

    val_error: float
    runtime: RuntimeEstimate
    measured_seconds: float
    cutting: CuttingCost


@dataclass(frozen=True)
class Objective:
    """One minimised objective (see the module docstring).

    Attributes:
        name: the key results store it under.
        label, unit: what it is and its unit, for plot axes and reports.
        source: attribute path of its value in :class:`Measurements` (or a ``Candidate``).
        failed_value: the value of a candidate whose evaluation failed.
        count: its values count things (integer ticks on a plot).
        log10: its values are the log10 of a count (drawn as the count on a log axis).
    """

    name: str
    label: str = ""
    unit: str = ""
    source: str = ""
    failed_value: float = float("inf")
    count: bool = False
    log10: bool = False

    @property
    def axis_label(self) -> str:
        """The label with its unit in brackets (the name when the objective has no label)."""
        label = self.label or self.name
        return f"{label} ({self.unit})" if self.unit else label

    def value_of(self, measured: object) -> float:
        """This objective's value for a candidate, read from its measurements (or the candidate)."""
        if not self.source:
            raise ValueError(f"objective {self.name!r} has no source to read its value from")
        return float(operator.attrgetter(self.source)(measured))

    def drawn(self, values: np.ndarray) -> np.ndarray:
        """``values`` as a plot draws them: a log10 objective as the count itself."""
        return np.power(10.0, values) if self.log10 else np.asarray(values, dtype=float)


VAL_ERROR = Objective("val_error", "validation error", "fraction misclassified", source="val_error",
                      failed_value=1.0)
RUNTIME_PROXY = Objective("runtime_proxy", "runtime proxy", "s", source="runtime.seconds", failed_value=1e12)
MEASURED_SECONDS = Objective("measured_seconds", "measured runtime", "s", source="measured_seconds",
                             failed_value=1e12)
N_SUBCIRCUITS = Objective("n_subcircuits", "subcircuits", "devices of qubit_budget qubits",
                          source="cutting.n_subcircuits", failed_value=1e6, count=True)
LOG10_SUBEXPERIMENTS = Objective("log10_subexperiments", "cutting sub-experiments", "circuits",
                                 source="cutting.log10_subexperiments", failed_value=1e6, count=True, log10=True)
LOG10_SAMPLING_OVERHEAD = Objective("log10_sampling_overhead", "cutting sampling overhead", "x shots",
                                    source="cutting.log10_sampling_overhead", failed_value=1e6, log10=True)

#: every objective a search can minimise, by name
KNOWN_OBJECTIVES = {o.name: o for o in (VAL_ERROR, RUNTIME_PROXY, MEASURED_SECONDS, N_SUBCIRCUITS,
                                         LOG10_SUBEXPERIMENTS, LOG10_SAMPLING_OVERHEAD)}
#: the second objective's alternatives: ``runtime_objective`` -> objective name
RUNTIME_OBJECTIVES = {"proxy": RUNTIME_PROXY.name, "measured": MEASURED_SECONDS.name}
#: the third objective's alternatives: ``cutting_objective`` -> objective name
CUTTING_OBJECTIVES = {"subcircuits": N_SUBCIRCUITS.name, "subexperiments": LOG10_SUBEXPERIMENTS.name,
                      "overhead": LOG10_SAMPLING_OVERHEAD.name}


def search_objectives(runtime_objective: str = "proxy",
                      cutting_objective: str = "subcircuits") -> tuple[Objective, ...]:
    """The objectives a search minimises, in order: validation error, the runtime of
    ``runtime_objective`` and the cutting cost of ``cutting_objective``.

    Raises :class:`~qiskit_qnas.validation.InvalidArgument` (a ValueError) naming the setting and
    its allowed values."""
    check_choice("runtime_objective", runtime_objective, RUNTIME_OBJECTIVES)
    check_choice("cutting_objective", cutting_objective, CUTTING_OBJECTIVES)
    return (VAL_ERROR, KNOWN_OBJECTIVES[RUNTIME_OBJECTIVES[runtime_objective]],
            KNOWN_OBJECTIVES[CUTTING_OBJECTIVES[cutting_objective]])


#: the objectives of a search with the default settings
DEFAULT_OBJECTIVES = search_objectives()
#: their names, in order
OBJECTIVE_NAMES = tuple(o.name for o in DEFAULT_OBJECTIVES)


def objective_named(name: str) -> Objective:
    """The known objective ``name``, or a plain one labelled by its name (a result written with
    objectives this version does not know still loads and plots)."""
    return KNOWN_OBJECTIVES.get(name) or Objective(name)


def as_objectives(objectives: Sequence[Objective | str]) -> tuple[Objective, ...]:
    """``objectives`` as :class:`Objective` values, names looked up with :func:`objective_named`."""
    return tuple(o if isinstance(o, Objective) else objective_named(o) for o in objectives)
