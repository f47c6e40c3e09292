"""Circuit-cutting cost of a candidate: what it takes to run it cut into pieces that fit a qubit budget.

Built on qiskit-addon-cutting, :func:`cutting_cost` answers *what would it take* to run an
architecture on devices of ``qubit_budget`` qubits: the cuts ``find_cuts`` picks under
``DeviceConstraints(qubits_per_subcircuit=budget)``, the pieces (partitions) the cut circuit falls
into, the fewest devices of ``qubit_budget`` qubits that hold those pieces (the "number of
subcircuits", see Devices below), the number of sub-experiments ``generate_cutting_experiments``
would produce, and the sampling overhead. It is the search's third objective, so it must be cheap
(cached), bounded in time (dense entanglers make the cut-finder's best-first search explode) and
never enumerate the 6^k QPD terms of k cuts. Actually *running* a candidate cut, with these cut
locations, is :mod:`qiskit_qnas.cut_execution`.

Devices
-------
The pieces of a cut circuit are independent circuits, so any of them whose widths add up to at
most ``qubit_budget`` run side by side on one device. ``n_subcircuits`` is the fewest devices
(bins of ``qubit_budget`` qubits) that hold the pieces' widths: a bin packing, solved exactly
(first-fit decreasing when it meets the lower bound ``ceil(sum of widths / budget)``, otherwise a
dynamic programme over subsets of pieces, up to :data:`EXACT_PACKING_PIECES` pieces; beyond that
first-fit decreasing, an upper bound). Hence a circuit that fits needs 1 device, a product circuit
of n qubits (n one-qubit pieces) ``ceil(n / budget)``, and every circuit of n qubits at least
``ceil(n / budget)`` (wire cuts only add qubits), so a product circuit never needs more devices
than any circuit of its width. A circuit whose pieces fit uncut can still need more devices than a
cut one of the same width (odd pairs on 6 qubits at budget 3: pieces of 2 + 2 + 2 qubits, 3
devices; a chain of 6 cut once, 3 + 3, 2 devices): the count is that of the cheapest cutting
``find_cuts`` returns, not of the fewest devices any cutting could reach, since cutting more to
pack better multiplies the sampling overhead. ``n_pieces`` is the number of pieces itself.

Counting formula
----------------
After ``find_cuts`` -> ``cut_wires`` -> ``expand_observables`` -> ``partition_problem``, the cut
problem is a set of partitions P (each a subcircuit with at most ``qubit_budget`` qubits), a list of
QPD bases (one per cut: a cut two-qubit gate, or a cut wire which ``cut_wires`` turns into a
two-qubit ``Move``) and per partition the sub-observables. ``generate_cutting_experiments`` with
exact weights (``num_samples=inf``) enumerates *jointly* over all cuts every combination of QPD
terms, and for every combination and every partition makes one circuit per commuting group of that
partition's sub-observables. Hence::

    n_subexperiments = prod_{cuts c} T(c)  *  sum_{partitions p} G(p)

with ``T(c)`` the number of terms of the cut's QPD basis with nonzero probability (6 for a CX/CZ,
and for RZZ(pi/2), the worst case of RZZ; 8 for a wire cut, i.e. a ``Move``) and ``G(p)`` the number
of groups ``ObservableCollection`` forms from the partition's sub-observables (1 for the network's
outputs ``Z_0..Z_{n-1}``, which all commute qubit-wise). The sampling overhead is
``prod_c kappa_c^2`` (9 per CX, 16 per wire cut); it equals ``find_cuts``' reported
``sampling_overhead``. (The package's exact mode additionally drops joint terms whose probability is
below 1e-14, which first happens beyond ~18 cuts, where enumeration is impossible anyway; the count
above is the number of terms of the joint decomposition.) The tests check the formula against
``len()`` of what ``generate_cutting_experiments(..., num_samples=np.inf)`` really returns.

Bounds and exactness
--------------------
``find_cuts`` runs a greedy pass (an "anytime" solution) and then a best-first (Dijkstra) search
that proves the minimum sampling overhead. The search is bounded by ``max_backjumps`` (a
deterministic budget, by default ``400 * time_limit``) *and* by a wall-clock deadline of
``time_limit`` seconds, enforced inside the search loop itself. When a bound stops the search, the
result is still a valid, achievable cutting (the greedy solution or the best found), i.e. an *upper
bound* on the true minimum, and is marked ``exact=False``; ``stopped_by`` says which bound fired.
``exact=True`` means the cut-finder proved its overhead minimal (``minimum_reached``), or no cut was
needed. The backjump budget keeps results reproducible from run to run; the deadline is the safety
net (a result stopped by it may depend on the machine's speed).

Parametrised two-qubit gates: ``find_cuts`` refuses unbound parameters and prices a two-qubit
rotation by its angle (an RZZ(theta) cut is cheaper for small theta). Cut locations must hold for
every input, so the cut-finder sees every parametrised two-qubit gate at its *worst-case* angle (the
one with the largest QPD ``kappa``, pi/2 for RZZ/RXX/RYY/RZX, pi for controlled rotations) and every
one-qubit parameter at an arbitrary constant; see :func:`worst_case_circuit`. The cut locations are
instruction indices, valid for the real circuit with any parameter values.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from qiskit.circuit import CircuitInstruction, Gate, ParameterExpression, QuantumCircuit
from qiskit.quantum_info import Pauli, PauliList, SparsePauliOp
from qiskit_addon_cutting import (
    DeviceConstraints,
    OptimizationParameters,
    cut_gates,
    cut_wires,
    expand_observables,
    find_cuts,
    partition_problem,
)
from qiskit_addon_cutting.instructions import CutWire
from qiskit_addon_cutting.qpd import QPDBasis
from qiskit_addon_cutting.utils.observable_grouping import ObservableCollection

from .circuits import build_circuit
from .spec import ArchitectureSpec
from .validation import check_int, check_number, check_positive

__all__ = [
    "CuttingCost",
    "cutting_cost",
    "pack_pieces",
    "worst_case_circuit",
    "apply_cuts",
    "cache_info",
    "clear_cache",
]

#: QPD terms count as present above this probability (qiskit-addon-cutting's own threshold)
_NONZERO_ATOL = 1e-14
#: backjumps of the cut-finder's best-first search per second of ``time_limit`` (measured here:
#: 0.3-1.4 ms per backjump on circuits of 100+ gates, so this uses under half the time limit and
#: the deadline stays a safety net)
BACKJUMPS_PER_SECOND = 400
#: seconds kept back from ``time_limit`` for the work after the search (partitioning, counting)
_POST_RESERVE = 0.15
#: up to this many pieces, the device packing is solved exactly over subsets (2^14 states)
EXACT_PACKING_PIECES = 14


# ------------------------------------------------------------------------------------------------
# result type
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CuttingCost:
    """The cost of running one circuit on devices of ``qubit_budget`` qubits through circuit cutting.

    Attributes:
        n_subexperiments: circuits ``generate_cutting_experiments`` would produce with exact QPD
            weights: ``n_qpd_terms * n_observable_groups`` (see the module docstring). A Python
            int, possibly astronomically large (``log10_subexperiments`` holds its log).
        n_subcircuits: the fewest devices of ``qubit_budget`` qubits that run the cut circuit's
            pieces, pieces that fit together sharing a device (the "number of subcircuits", see
            Devices in the module docstring); 1 when it fits.
        n_pieces: number of pieces (connected partitions) the cut circuit separates into, each at
            most ``qubit_budget`` qubits; 1 when it fits.
        sampling_overhead: product of ``kappa^2`` over the cuts (9 per CX cut, 16 per wire cut);
            ``inf`` if it overflows a float (``log10_sampling_overhead`` stays finite).
        exact: True when the cut-finder proved the overhead minimal (or nothing had to be cut);
            False when a bound stopped it, so the cost is an achievable upper bound.
        cuts: the cut plan in circuit order: ``("gate", index, gate_name)`` cuts instruction
            ``index`` of the circuit; ``("wire", index, qubit)`` cuts the wire of ``qubit`` just
            before instruction ``index``. Indices refer to the uncut circuit, so the plan applies
            to it with any parameter values (:func:`apply_cuts`).
        n_gate_cuts, n_wire_cuts: counts of the two kinds of cuts.
        seconds: wall time spent computing this cost (not the time of a cache hit).
        qubit_budget, n_qubits: the budget asked for and the circuit's width.
        partition_widths: qubits of each piece (wire cuts add a qubit to a piece).
        packing: the pieces on each device, as indices into ``partition_widths`` (one tuple per
            device, ``n_subcircuits`` of them).
        n_qpd_terms: joint QPD terms, ``prod_c T(c)``.
        n_observable_groups: commuting observable groups summed over partitions.
        stopped_by: None when the search completed; ``"max_backjumps"``, ``"time_limit"`` or
            ``"max_gamma"`` when that bound stopped it (``exact`` is then False).
        search_overhead: ``sampling_overhead`` as reported by ``find_cuts`` (None when it fits).
    """

    n_subexperiments: int
    n_subcircuits: int
    n_pieces: int
    sampling_overhead: float
    exact: bool
    cuts: tuple = ()
    n_gate_cuts: int = 0
    n_wire_cuts: int = 0
    seconds: float = 0.0
    qubit_budget: int = 0
    n_qubits: int = 0
    partition_widths: tuple = ()
    packing: tuple = ()
    n_qpd_terms: int = 1
    n_observable_groups: int = 1
    log10_subexperiments: float = 0.0
    log10_sampling_overhead: float = 0.0
    stopped_by: str | None = None
    search_overhead: float | None = field(default=None, compare=False)

    @property
    def fits(self) -> bool:
        """True when the circuit fits the budget as it is (no cutting)."""
        return self.n_qubits <= self.qubit_budget

    @property
    def n_cuts(self) -> int:
        return self.n_gate_cuts + self.n_wire_cuts

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (``n_subexperiments`` stays an exact Python int; an overflowed overhead -> None)."""
        data = asdict(self)
        data["cuts"] = [list(c) for c in self.cuts]
        data["partition_widths"] = list(self.partition_widths)
        data["packing"] = [list(device) for device in self.packing]
        for key in ("sampling_overhead", "search_overhead"):
            value = data[key]
            if value is not None and not math.isfinite(value):
                data[key] = None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CuttingCost:
        """The cost :meth:`to_dict` wrote (keys it does not know are ignored)."""
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["cuts"] = tuple(tuple(c) for c in data.get("cuts", ()))
        data["partition_widths"] = tuple(data.get("partition_widths", ()))
        data["packing"] = tuple(tuple(device) for device in data.get("packing", ()))
        data["n_subexperiments"] = int(data["n_subexperiments"])
        if data.get("sampling_overhead") is None:
            data["sampling_overhead"] = _pow10(data.get("log10_sampling_overhead", math.inf))
        return cls(**data)


def _pow10(x: float) -> float:
    try:
        return 10.0**x
    except OverflowError:
        return math.inf


def _log10(n: int | float) -> float:
    return math.log10(n) if n > 0 else -math.inf


# ------------------------------------------------------------------------------------------------
# validation and inputs
# ------------------------------------------------------------------------------------------------
def _as_circuit(arch_or_circuit: Any) -> QuantumCircuit:
    if isinstance(arch_or_circuit, ArchitectureSpec):
        return build_circuit(arch_or_circuit).circuit.copy()
    if isinstance(arch_or_circuit, QuantumCircuit):
        qc = arch_or_circuit
        if qc.num_clbits:
            qc = qc.remove_final_measurements(inplace=False)
        if qc.num_clbits:
            raise ValueError("invalid arch_or_circuit: circuit cutting needs a circuit without "
                             "classical bits (mid-circuit measurements are not supported)")
        too_wide = {inst.operation.name for inst in qc.data
                    if len(inst.qubits) > 2 and inst.operation.name != "barrier"}
        if too_wide:
            raise ValueError(f"invalid arch_or_circuit: gates on more than two qubits ({sorted(too_wide)}) "
                             "cannot be cut; transpile the circuit to 1- and 2-qubit gates first")
        return qc
    raise ValueError(f"invalid arch_or_circuit={type(arch_or_circuit).__name__}; "
                     "allowed: an Architecture or a QuantumCircuit")


def _as_paulis(observables: Any, n_qubits: int) -> PauliList:
    """The distinct Pauli terms (phase-free) of the observables, default ``Z_i`` on every qubit."""
    if observables is None:
        return PauliList([Pauli("I" * (n_qubits - 1 - i) + "Z" + "I" * i) for i in range(n_qubits)])
    if isinstance(observables, (str, Pauli, SparsePauliOp, PauliList)):
        observables = [observables]
    paulis: list[Pauli] = []
    for obs in observables:
        if isinstance(obs, SparsePauliOp):
            paulis.extend(obs.paulis)
        elif isinstance(obs, PauliList):
            paulis.extend(obs)
        else:
            paulis.append(Pauli(obs))
    out = []
    for p in paulis:
        p = p.copy()
        p.phase = 0
        if p.num_qubits != n_qubits:
            raise ValueError(f"invalid observables: a {p.num_qubits}-qubit observable "
                             f"for a {n_qubits}-qubit circuit")
        out.append(p)
    if not out:
        raise ValueError("invalid observables: empty; allowed: None (Z on every qubit) or Pauli observables")
    return PauliList(out)


# ------------------------------------------------------------------------------------------------
# worst-case binding and cut plans
# ------------------------------------------------------------------------------------------------
_WORST_ANGLES = (math.pi / 2, math.pi)


def _kappa(op) -> float:
    return QPDBasis.from_instruction(op).kappa


def _worst_case_gate(op: Gate) -> Gate:
    """``op`` (a parametrised two-qubit gate) at the parameter values with the largest cut cost."""
    best, best_kappa = None, -1.0
    for values in itertools.product(_WORST_ANGLES, repeat=len(op.params)):
        candidate = op.to_mutable()
        candidate.params = list(values)
        try:
            kappa = _kappa(candidate)
        except Exception:  # noqa: BLE001 - gate without a known QPD: any angle will do
            continue
        if kappa > best_kappa:
            best, best_kappa = candidate, kappa
    if best is None:
        best = op.to_mutable()
        best.params = [math.pi / 2] * len(op.params)
    return best


def worst_case_circuit(circuit: QuantumCircuit, fill: float = 0.5) -> QuantumCircuit:
    """A fully bound copy of ``circuit`` for cut *finding*, with the same instruction indices.

    Each two-qubit gate with unbound parameters is replaced by the same gate at its worst-case
    angles (largest QPD ``kappa``: RZZ(pi/2) costs as much as a CX), so cuts found on this circuit
    are valid and priced for any input; every other unbound parameter becomes ``fill`` (one-qubit
    gates do not affect cutting). Gate parameters are replaced directly rather than through
    ``assign_parameters``, which is slow on large expressions (the amplitude embedding's angles are
    sums of many inputs).
    """
    out = circuit.copy_empty_like()
    if isinstance(out.global_phase, ParameterExpression):
        out.global_phase = 0.0
    for inst in circuit.data:
        op = inst.operation
        if any(isinstance(p, ParameterExpression) and p.parameters for p in op.params):
            if len(inst.qubits) == 2 and isinstance(op, Gate):
                op = _worst_case_gate(op)
            else:
                op = op.to_mutable()
                op.params = [fill if isinstance(p, ParameterExpression) and p.parameters else p
                             for p in op.params]
        out._append(CircuitInstruction(op, inst.qubits, inst.clbits))
    return out


def _plan_from_cut_circuit(cut_qc: QuantumCircuit, original: QuantumCircuit) -> tuple:
    """``find_cuts``' output circuit -> cut plan in indices of the uncut circuit (see ``CuttingCost.cuts``)."""
    cuts, wires_seen = [], 0
    for i, inst in enumerate(cut_qc.data):
        name = inst.operation.name
        if name == "cut_wire":
            cuts.append(("wire", i - wires_seen, cut_qc.find_bit(inst.qubits[0]).index))
            wires_seen += 1
        elif name == "qpd_2q":
            index = i - wires_seen
            cuts.append(("gate", index, original.data[index].operation.name))
    return tuple(cuts)


def apply_cuts(circuit: QuantumCircuit, cuts: Sequence[tuple]) -> QuantumCircuit:
    """Apply a cut plan (``CuttingCost.cuts``) to ``circuit``: cut gates become ``TwoQubitQPDGate``,
    cut wires get a ``CutWire`` (turn them into ``Move`` with ``cut_wires``).

    The cut gates must be bound (a QPD needs the angle); other gates may keep parameters.
    """
    gate_ids = [c[1] for c in cuts if c[0] == "gate"]
    out = cut_gates(circuit, gate_ids)[0] if gate_ids else circuit.copy()
    wires = sorted((c[1], c[2]) for c in cuts if c[0] == "wire")
    for k, (index, qubit) in enumerate(wires):
        out.data.insert(index + k, CircuitInstruction(CutWire(), [out.qubits[qubit]], []))
    return out


def _n_terms(basis) -> int:
    probabilities = np.asarray(basis.probabilities, dtype=float)
    return int(np.count_nonzero(~np.isclose(probabilities, 0.0, atol=_NONZERO_ATOL)))


def _partition(cut_qc: QuantumCircuit, original: QuantumCircuit, paulis: PauliList):
    """``cut_wires`` -> ``expand_observables`` -> ``partition_problem``; drops idle-qubit partitions."""
    wired = cut_wires(cut_qc)
    expanded = expand_observables(paulis, original, wired)
    problem = partition_problem(wired, observables=expanded)
    subobservables = {label: problem.subobservables[label] for label in problem.subcircuits}
    return problem.subcircuits, problem.bases, subobservables


def _count(cut_qc: QuantumCircuit, original: QuantumCircuit, paulis: PauliList) -> dict[str, Any]:
    """The counting formula of the module docstring, from the partitioned problem (never enumerates)."""
    subcircuits, bases, subobservables = _partition(cut_qc, original, paulis)
    terms = math.prod(_n_terms(b) for b in bases)
    groups = sum(len(ObservableCollection(subobservables[label]).groups) for label in subcircuits)
    log10_overhead = sum(math.log10(b.overhead) for b in bases)
    overhead = math.prod(float(b.overhead) for b in bases) if log10_overhead < 300 else math.inf
    return {"n_qpd_terms": terms, "n_observable_groups": groups, "n_subexperiments": terms * groups,
            "partition_widths": tuple(subcircuits[label].num_qubits for label in subcircuits),
            "sampling_overhead": overhead, "log10_sampling_overhead": log10_overhead,
            "log10_subexperiments": _log10(terms) + _log10(groups)}


def _first_fit_decreasing(widths: Sequence[int], budget: int) -> list[list[int]]:
    devices: list[list[int]] = []
    free: list[int] = []
    for piece in sorted(range(len(widths)), key=lambda i: (-widths[i], i)):
        for d, room in enumerate(free):
            if widths[piece] <= room:
                devices[d].append(piece)
                free[d] -= widths[piece]
                break
        else:
            devices.append([piece])
            free.append(budget - widths[piece])
    return devices


def _exact_packing(widths: Sequence[int], budget: int) -> list[list[int]]:
    """Fewest bins by dynamic programming over subsets: ``best[mask]`` is the lexicographically
    smallest (bins used, fill of the last bin) that packs the pieces of ``mask`` one at a time, the
    last bin being the open one (exact: every packing is some order of its pieces, bin by bin)."""
    n = len(widths)
    best: list[tuple[int, int]] = [(0, budget)] + [(n + 1, 0)] * ((1 << n) - 1)
    last = [-1] * (1 << n)
    for mask in range(1, 1 << n):
        for i in range(n):
            bit = 1 << i
            if not mask & bit:
                continue
            bins, fill = best[mask ^ bit]
            state = (bins, fill + widths[i]) if fill + widths[i] <= budget else (bins + 1, widths[i])
            if state < best[mask]:
                best[mask], last[mask] = state, i
    # walk back: a piece opened a new bin where the fill dropped to its own width
    order, mask = [], (1 << n) - 1
    while mask:
        order.append(last[mask])
        mask ^= 1 << last[mask]
    devices: list[list[int]] = []
    fill = budget
    for piece in reversed(order):
        if fill + widths[piece] > budget:
            devices.append([])
            fill = 0
        devices[-1].append(piece)
        fill += widths[piece]
    return devices


def pack_pieces(widths: Sequence[int], qubit_budget: int) -> tuple[tuple[int, ...], ...]:
    """The fewest devices of ``qubit_budget`` qubits that hold pieces of the given widths.

    Returns one tuple of piece indices (into ``widths``) per device, sorted, devices ordered by
    their first piece. Exact up to :data:`EXACT_PACKING_PIECES` pieces (first-fit decreasing when it
    meets the lower bound ``ceil(sum(widths) / qubit_budget)``, else a dynamic programme over
    subsets); first-fit decreasing (an upper bound) beyond.
    """
    budget = check_int("qubit_budget", qubit_budget, 1)
    widths = [int(w) for w in widths]
    if any(w < 0 or w > budget for w in widths):
        raise ValueError(f"invalid widths={widths!r}; allowed: piece widths between 0 and qubit_budget={budget}")
    devices = _first_fit_decreasing(widths, budget)
    lower_bound = max(1, math.ceil(sum(widths) / budget)) if widths else 0
    if len(devices) > lower_bound and len(widths) <= EXACT_PACKING_PIECES:
        devices = _exact_packing(widths, budget)
    return tuple(sorted(tuple(sorted(d)) for d in devices))


class _DeadlineBudget(int):
    """``max_backjumps`` for ``find_cuts`` that also runs out at a wall-clock deadline.

    qiskit-addon-cutting's best-first search loops ``while num_backjumps < max_backjumps``; an int
    subclass takes part in that comparison (Python tries the subclass' reflected method first), so
    the search stops at the first state it pops after the deadline, with the greedy / best solution
    found so far. Everywhere else it behaves as the plain backjump budget.
    """

    deadline: float
    expired: bool

    def __new__(cls, budget: int, deadline: float):
        obj = super().__new__(cls, budget)
        obj.deadline = deadline
        obj.expired = False
        return obj

    def _effective(self) -> int:
        if time.monotonic() >= self.deadline:
            self.expired = True
            return 0
        return int(self)

    def __gt__(self, other):  # other < self
        return self._effective() > other

    def __ge__(self, other):
        return self._effective() >= other

    def __lt__(self, other):
        return self._effective() < other

    def __le__(self, other):
        return self._effective() <= other

    __hash__ = int.__hash__


def _find(worst: QuantumCircuit, budget: int, deadline: float, max_backjumps: int, max_gamma: float,
          seed: int):
    """Run ``find_cuts`` under both bounds; fall back to cutting every two-qubit gate if it finds nothing."""
    bj = _DeadlineBudget(max_backjumps, deadline)
    try:
        optimization = OptimizationParameters(seed=seed, max_gamma=max_gamma, max_backjumps=bj)
        with np.errstate(over="ignore"):  # find_cuts squares gamma in numpy; huge ones overflow to inf
            cut_qc, meta = find_cuts(worst, optimization, DeviceConstraints(qubits_per_subcircuit=budget))
    except AttributeError as error:  # the search found no solution at all (optimizer returned None)
        if "NoneType" not in str(error):
            raise
        gate_ids = [i for i, inst in enumerate(worst.data)
                    if len(inst.qubits) == 2 and inst.operation.name != "barrier"]
        return apply_cuts(worst, [("gate", i, "") for i in gate_ids]), None, False, "fallback"
    exact = bool(meta.get("minimum_reached", False))
    stopped_by = None
    if not exact:
        if bj.expired:
            stopped_by = "time_limit"
        elif math.isfinite(max_gamma) and math.sqrt(float(meta["sampling_overhead"])) > max_gamma:
            stopped_by = "max_gamma"
        else:
            stopped_by = "max_backjumps"
    return cut_qc, float(meta["sampling_overhead"]), exact, stopped_by


# ------------------------------------------------------------------------------------------------
# cutting_cost
# ------------------------------------------------------------------------------------------------
_CACHE: dict[Hashable, CuttingCost] = {}
_CACHE_LOCK = threading.Lock()
_STATS = {"hits": 0, "misses": 0}


def cache_info() -> dict[str, int]:
    """Hits, misses and size of the in-process :func:`cutting_cost` cache."""
    with _CACHE_LOCK:
        return {**_STATS, "size": len(_CACHE)}


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
        _STATS.update(hits=0, misses=0)


def cutting_cost(arch_or_circuit: ArchitectureSpec | QuantumCircuit, qubit_budget: int, time_limit: float = 5.0,
                 observables: Any = None, *, max_backjumps: int | None = None, max_gamma: float = math.inf,
                 seed: int = 0) -> CuttingCost:
    """What circuit cutting needs to run a circuit on devices of ``qubit_budget`` qubits.

    Args:
        arch_or_circuit: an :class:`Architecture` (results cached per architecture and settings)
            or a ``QuantumCircuit`` of one- and two-qubit gates (not cached).
        qubit_budget: qubits per device (>= 1).
        time_limit: wall-clock cap in seconds for finding the cuts (the whole call stays within it
            up to a few tens of milliseconds of post-processing).
        observables: the observables to be reconstructed (Pauli strings, ``Pauli``,
            ``SparsePauliOp``s or a ``PauliList``); default ``Z_i`` on every qubit (the network's
            outputs). They only change the number of observable groups.
        max_backjumps: deterministic budget of the cut-finder's best-first search; default
            ``BACKJUMPS_PER_SECOND * time_limit`` (2000 for 5 s).
        max_gamma: the search stops (with the greedy solution) once every open state's gamma
            exceeds this; default no such bound.
        seed: seed of the cut-finder's tie-breaking (results are reproducible per seed).

    Returns:
        A :class:`CuttingCost`. When the circuit fits (``n_qubits <= qubit_budget``): 1 device,
        1 sub-experiment, overhead 1, exact, without calling ``find_cuts``. Otherwise the cuts of
        ``find_cuts`` on :func:`worst_case_circuit` and the counts of the module docstring; when a
        bound stops the search the result is an achievable upper bound with ``exact=False``.
    """
    budget = check_int("qubit_budget", qubit_budget, 1)
    time_limit = check_positive("time_limit", time_limit, allowed="a positive number of seconds")
    if max_backjumps is None:
        max_backjumps = max(1, int(BACKJUMPS_PER_SECOND * time_limit))
    else:
        check_int("max_backjumps", max_backjumps, 0, allowed="None or an integer >= 0")
    check_number("max_gamma", max_gamma, 1, high_inclusive=True, allowed="a number >= 1")  # inf: no bound

    key = None
    if isinstance(arch_or_circuit, ArchitectureSpec) and observables is None:
        key = (arch_or_circuit, budget, time_limit, int(max_backjumps), float(max_gamma), seed)
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
            if hit is not None:
                _STATS["hits"] += 1
                return hit
            _STATS["misses"] += 1
    cost = _compute(_as_circuit(arch_or_circuit), budget, time_limit, observables, int(max_backjumps),
                    float(max_gamma), seed)
    if key is not None:
        with _CACHE_LOCK:
            cost = _CACHE.setdefault(key, cost)
    return cost


def _compute(circuit: QuantumCircuit, budget: int, time_limit: float, observables: Any, max_backjumps: int,
             max_gamma: float, seed: int) -> CuttingCost:
    start = time.perf_counter()
    deadline = time.monotonic() + max(0.05, time_limit - _POST_RESERVE)
    n = circuit.num_qubits
    if n <= budget:
        return CuttingCost(n_subexperiments=1, n_subcircuits=1, n_pieces=1, sampling_overhead=1.0, exact=True,
                           seconds=time.perf_counter() - start, qubit_budget=budget, n_qubits=n,
                           partition_widths=(n,), packing=((0,),))
    paulis = _as_paulis(observables, n)
    worst = worst_case_circuit(circuit)
    cut_qc, search_overhead, exact, stopped_by = _find(worst, budget, deadline, max_backjumps, max_gamma,
                                                       seed)
    cuts = _plan_from_cut_circuit(cut_qc, worst)
    if not cuts:
        exact, stopped_by = True, None  # nothing cut: overhead 1 is the minimum
    counts = _count(cut_qc, worst, paulis)
    packing = pack_pieces(counts["partition_widths"], budget)
    n_gate = sum(1 for c in cuts if c[0] == "gate")
    return CuttingCost(n_subcircuits=len(packing), n_pieces=len(counts["partition_widths"]), packing=packing,
                       exact=exact, cuts=cuts, n_gate_cuts=n_gate, n_wire_cuts=len(cuts) - n_gate,
                       seconds=time.perf_counter() - start, qubit_budget=budget, n_qubits=n,
                       stopped_by=stopped_by, search_overhead=search_overhead, **counts)
