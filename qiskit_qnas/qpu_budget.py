"""QPU budgets: the device usage a search plans before any job, what it accounts, and where it stops.

A search whose target is a device (an IBM backend, or a fake one in Runtime's local testing mode,
which stands for it: :attr:`~qiskit_qnas.targets.ExecutionTarget.on_device`) is billed the device
time of every job it submits (:mod:`qiskit_qnas.runtime_proxy`). Before any job,
:func:`plan_search` estimates what the search will submit, as a :class:`QPUPlan`: every
evaluation is costed at the search space's costliest member (the most qubits and layers, the
widest rotation, the densest entangler, each embedding), so the plan is an upper bound.

Two ways to search on a device (``fidelity``):

* ``"target"``: every candidate is measured on the device (its validation split, the target's
  shots), and so are the re-measurements of the leader (``reevaluations``);
* ``"multi"`` (the default on a device): every candidate is measured on the device's emulation (Aer
  with the device's noise model, :meth:`~qiskit_qnas.targets.RuntimeTarget.emulator`: no QPU time),
  and the device measures only the front members the emulation cannot separate: the leader and its
  near-ties (within one binomial standard error), at most ``device_confirmations`` of them, on a
  validation subset of at most ``device_samples`` samples, with shots sized by the precision the
  decisions need (:func:`qiskit_qnas.fidelity.shots_for_margins`).

A budget (``max_qpu_seconds``) is kept two ways: a plan whose *first step* (the first generation on
the device, or the first confirmation) does not fit is refused before any job with one line
(:class:`QPUBudgetError`); during the search every job's usage is accounted
(:func:`billed_seconds`, :attr:`~qiskit_qnas.result.Candidate.qpu_seconds`) and nothing is
submitted that would take the total past the budget: a search that reaches it stops after its last
complete generation (its checkpoint intact, so a later fit with a larger budget resumes it to the
result an uninterrupted run reaches) and chooses from what it measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .space import Architecture, SearchSpace
from .spec import MAX_AMPLITUDE_QUBITS, ROTATION_GATES
from .validation import InvalidArgument, check_choice

#: how a search on a device measures its candidates (see the module doc); "auto": "multi" on a device
FIDELITIES = ("auto", "target", "multi")
#: the validation samples a multi-fidelity search measures each confirmed candidate on, at most
DEVICE_SAMPLES = 256
#: entanglers from the most two-qubit gates per layer to the fewest
_ENTANGLER_DENSITY = ("full", "all", "chain", "odd", "even", "none")


class QPUBudgetError(ValueError):
    """A QPU budget that cannot hold the device work asked of it (the message is one line: the
    estimate, the budget and what would fit)."""


def resolve_fidelity(fidelity: str, target) -> str:
    """``"target"`` or ``"multi"``: what ``fidelity`` means on ``target`` (``"auto"``: ``"multi"`` on
    a device, ``"target"`` elsewhere, where every measurement is free)."""
    check_choice("fidelity", fidelity, FIDELITIES)
    if not target.on_device:
        if fidelity == "multi":
            raise InvalidArgument("fidelity", fidelity, "'auto' or 'target' (a multi-fidelity search emulates a "
                                  "device: pass a fake or IBM backend in Runtime mode)",
                                  context=f" with target {target.name}")
        return "target"
    return "multi" if fidelity == "auto" else fidelity


def billed_seconds(target, estimate_seconds: float, attempts: int = 1, reported: float | None = None) -> float:
    """Device seconds to account for one evaluation on ``target``: 0 off a device; else the estimate
    for every attempt submitted (a failed job may be billed up to its failure), or the usage the
    service reported when that is more."""
    if not target.on_device:
        return 0.0
    return max(float(estimate_seconds) * max(int(attempts), 1), float(reported or 0.0))


def costliest_members(space: SearchSpace) -> list[Architecture]:
    """The members of ``space`` whose evaluation costs the most device time, one per embedding:
    the most qubits (amplitude: at most its limit) and layers, the widest rotation, and the densest
    entangler with the longest range in every layer."""
    rotation = max(space.rotations, key=lambda r: len(ROTATION_GATES[r]))
    entangler = next(e for e in _ENTANGLER_DENSITY if e in space.entanglers)
    members = []
    for embedding in space.embeddings:
        n = space.max_qubits if embedding != "amplitude" else min(space.max_qubits, MAX_AMPLITUDE_QUBITS)
        n = max(n, space.qubits[0])
        reach = max(1, min(space.ranges[1], n - 1))
        layers = space.max_layers
        members.append(Architecture(n, layers, embedding, rotation, (entangler if n > 1 else "none",) * layers,
                                    (reach,) * layers))
    return members


@dataclass(frozen=True)
class PlanItem:
    """One kind of work a search submits: ``evaluations`` jobs of ``circuits`` parameter sets at
    ``shots`` each (0: not on the device), ``seconds`` of device time for all of them together."""

    what: str
    evaluations: int
    circuits: int
    shots: int
    seconds: float

    def line(self) -> str:
        where = f"{self.shots} shots, {self.seconds:,.0f} QPU s" if self.shots else "emulated, 0 QPU s"
        return f"{self.what}: {self.evaluations} x {self.circuits} circuits ({where})"


@dataclass(frozen=True)
class QPUPlan:
    """What a search will submit to ``device``, estimated before any job (see the module doc).

    ``first_step_seconds``: the device time of the least the search must submit to end with a model
    measured on the device (the first generation, or the first confirmation), ``first_step`` in words.
    """

    device: str
    fidelity: str
    items: tuple[PlanItem, ...]
    first_step: str
    first_step_seconds: float
    max_qpu_seconds: float | None = None

    @property
    def seconds(self) -> float:
        """The device seconds of the whole plan (an upper bound)."""
        return float(sum(item.seconds for item in self.items))

    @property
    def fits(self) -> bool:
        return self.max_qpu_seconds is None or self.seconds <= self.max_qpu_seconds

    def summary(self) -> str:
        """The plan in a few lines, as ``fit`` prints it."""
        budget = "no budget" if self.max_qpu_seconds is None else f"budget {self.max_qpu_seconds:,.0f} s"
        lines = [f"QPU plan on {self.device} ({self.fidelity}-fidelity search): at most {self.seconds:,.0f} QPU s "
                 f"({self.seconds / 60:.1f} min), {budget}"]
        lines += [f"  {item.line()}" for item in self.items]
        if not self.fits:
            lines.append(f"  the plan exceeds the budget: the search stops before a job would take it past "
                         f"{self.max_qpu_seconds:,.0f} s (resume with a larger max_qpu_seconds)")
        return "\n".join(lines)

    def check(self) -> None:
        """Refuse (:class:`QPUBudgetError`, one line) a budget the first step does not fit in."""
        if self.max_qpu_seconds is not None and self.first_step_seconds > self.max_qpu_seconds:
            alternative = ("" if self.fidelity == "multi" else
                           "; fidelity='multi' measures only the leader and its near-ties on the device")
            raise QPUBudgetError(
                f"invalid max_qpu_seconds={self.max_qpu_seconds:g}: the search on {self.device} plans at most "
                f"{self.seconds:,.0f} QPU s and {self.first_step} alone needs {self.first_step_seconds:,.1f} s; "
                f"allowed: max_qpu_seconds >= {self.first_step_seconds:,.1f}{alternative}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["items"] = [asdict(item) for item in self.items]
        data["seconds"] = self.seconds
        return data


def plan_search(target, space: SearchSpace, *, fidelity: str, population_size: int, n_generations: int,
                n_validation: int, reevaluations: int = 0, device_confirmations: int = 0,
                device_samples: int = DEVICE_SAMPLES, max_qpu_seconds: float | None = None) -> QPUPlan | None:
    """The :class:`QPUPlan` of a search on ``target`` (None off a device): at most
    ``population_size x n_generations`` candidate evaluations on ``n_validation`` samples, and
    ``reevaluations`` re-measurements (``fidelity="target"``) or ``device_confirmations`` on at most
    ``device_samples`` samples (``"multi"``), each costed at the space's costliest member."""
    if not target.on_device:
        return None
    members = costliest_members(space)

    def per_evaluation(n_circuits: int) -> float:
        return max(target.runtime_estimate(arch, n_circuits).seconds for arch in members)

    evaluations = int(population_size) * int(n_generations)
    shots = int(target.proxy_shots)
    if fidelity == "target":
        one = per_evaluation(n_validation)
        items = (PlanItem("candidate evaluations on the device", evaluations, n_validation, shots, evaluations * one),
                 PlanItem("re-measurements of the leader", int(reevaluations), n_validation, shots,
                          int(reevaluations) * one))
        first, first_seconds = f"the first generation ({population_size} candidates)", population_size * one
    else:
        n_device = min(int(device_samples), int(n_validation))
        one = per_evaluation(n_device)
        items = (PlanItem("candidate evaluations on the emulator", evaluations, n_validation, 0, 0.0),
                 PlanItem("device confirmations of the leader and its near-ties", int(device_confirmations), n_device,
                          shots, int(device_confirmations) * one))
        first, first_seconds = "one device confirmation", one
    return QPUPlan(device=target.name, fidelity=fidelity, items=items, first_step=first,
                   first_step_seconds=float(first_seconds), max_qpu_seconds=max_qpu_seconds)


def check_budget(spent: float, planned: float, max_qpu_seconds: float | None, what: str) -> None:
    """Raise :class:`QPUBudgetError` when ``planned`` more seconds would take ``spent`` past the budget."""
    if max_qpu_seconds is not None and spent + planned > max_qpu_seconds:
        raise QPUBudgetError(f"{what} needs {planned:,.1f} QPU s; {spent:,.1f} of max_qpu_seconds="
                             f"{max_qpu_seconds:g} are spent, {max(max_qpu_seconds - spent, 0.0):,.1f} s are left")


__all__ = ["DEVICE_SAMPLES", "FIDELITIES", "PlanItem", "QPUBudgetError", "QPUPlan", "billed_seconds", "check_budget",
           "costliest_members", "plan_search", "resolve_fidelity"]
