"""The runtime objective: the device time a candidate's evaluation would be billed on an IBM backend.

IBM Quantum counts usage as the time the QPU is locked for a job, and every shot of every circuit
is followed by the backend's repetition delay (``default_rep_delay``, 250 us on current IBM
devices; IBM's documentation, "Workload usage" and "Dynamic repetition rate execution"). For a
4-8 qubit candidate, whose own duration is 2-10 us, the delay is most of what is billed. One
evaluation of a candidate (:meth:`qiskit_qnas.targets.ExecutionTarget.runtime_estimate`) is
therefore counted as::

    seconds = n_circuits * E * (critical_path_seconds + rep_delay)
              + n_jobs * C * (measure_seconds + rep_delay)
              + n_jobs * job_overhead
              + n_circuits * per_circuit_overhead                              (0 by default)
    critical_path_seconds = max over measured qubits q of (finish[q] + measure_duration[q])

``E`` is the number of executions (shots) per parameter set: the target's shots (or
:data:`DEFAULT_PROXY_SHOTS`, 4096, Runtime's default precision, on exact targets), multiplied by
what Runtime's mitigation adds: ``E = F * R * s`` with ``R`` twirling randomizations of ``s`` shots
and ``F`` ZNE noise factors (:func:`qiskit_qnas.runtime_options.resolve_mitigation_plan`). ``C`` is
the shots of TREX's readout-calibration circuit per job (0 without measurement mitigation), which
lasts one measurement. ``n_circuits`` is the number of parameter sets evaluated (one per
validation sample) and ``n_jobs`` the jobs they are sent in (one per evaluation). ``rep_delay`` is
the ``rep_delay`` Runtime option when set, else the backend's ``default_rep_delay``, else
:data:`DEFAULT_REP_DELAY`; ``job_overhead`` is a fixed cost per job (:data:`DEFAULT_JOB_OVERHEAD`).

What it leaves out: the time Runtime's classical pre- and post-processing holds the QPU beyond the
fixed per-job overhead, queueing (not billed), and a ``Session``'s idle time (billed as wall clock
in session mode; searches run in a ``Batch``, whose usage is the sum of its jobs' quantum time).
Where the service reports a job's real usage (``job.metrics()["usage"]["quantum_seconds"]`` on IBM
channels) it is recorded beside the estimate (``Candidate.job_seconds``).

``finish`` is an as-soon-as-possible :func:`schedule` of the ISA circuit on the *reference backend*
(``target.backend``): an instruction starts when all its qubits are free and lasts
``backend.target[name][qargs].duration`` seconds (``rz`` is virtual: 0 s; a ``delay`` lasts its own
duration; a ``barrier`` synchronises its qubits and lasts 0 s). A missing duration is replaced by
the median of the target's positive one-qubit (two-qubit, measure) durations, or by 50 ns (300 ns,
1 us) when the target has none (:func:`typical_durations`). The ISA circuit has no measurements, so
one measurement of every logical qubit (at its final physical position) ends the path. The critical
path is kept beside the billed seconds: it says how much decoherence a circuit collects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from qiskit.circuit import QuantumCircuit

#: shots per circuit the runtime proxy assumes on targets without shots (the exact target)
DEFAULT_PROXY_SHOTS = 4096
#: seconds after every shot when the backend reports no ``default_rep_delay`` (IBM's devices: 250 us)
DEFAULT_REP_DELAY = 250e-6
#: fixed seconds of QPU time per job (loading the program and its parameters; an assumption, settable
#: per target with ``job_overhead=``)
DEFAULT_JOB_OVERHEAD = 1.0
#: durations assumed when the backend's target has none at all (seconds)
FALLBACK_DURATIONS = {1: 50e-9, 2: 300e-9, "measure": 1e-6}
#: seconds per unit of a ``delay`` given in SI units
_DELAY_UNITS = {"s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "ps": 1e-12}


@dataclass(frozen=True)
class RuntimeEstimate:
    """The runtime proxy of one candidate on a target, with its ingredients (see the module doc)."""

    seconds: float
    critical_path_seconds: float
    depth: int
    two_qubit_depth: int
    n_two_qubit_gates: int
    shots: int
    n_circuits: int
    backend_name: str
    executions_per_circuit: int = 0  # shots run per parameter set (with Runtime mitigation: more than shots)
    calibration_executions: int = 0  # shots of readout-calibration circuits per job (TREX)
    rep_delay: float = 0.0  # seconds after every shot
    n_jobs: int = 0
    job_overhead: float = 0.0  # seconds per job

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RuntimeEstimate:
        """The estimate :meth:`to_dict` wrote (keys it does not know are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Schedule:
    """What the proxy takes from the as-soon-as-possible schedule of one ISA circuit on a backend."""

    critical_path_seconds: float
    measure_seconds: float  # one measurement of every measured qubit (a readout-calibration circuit)
    depth: int
    two_qubit_depth: int
    n_two_qubit_gates: int


def typical_durations(backend) -> dict:
    """``{1: s, 2: s, "measure": s}``: the median positive duration of the backend target's one-qubit,
    two-qubit and measure instructions (:data:`FALLBACK_DURATIONS` for a kind it has none of)."""
    target = getattr(backend, "target", None)
    by_kind: dict[Any, list[float]] = {1: [], 2: [], "measure": []}
    if target is not None:
        for name in target.operation_names:
            try:
                items = target[name].items()
            except (KeyError, TypeError):
                continue
            for qargs, props in items:
                duration = getattr(props, "duration", None)
                if qargs is None or not duration or duration <= 0:
                    continue
                kind = "measure" if name == "measure" else len(qargs)
                if kind in by_kind:
                    by_kind[kind].append(float(duration))
    return {k: float(np.median(v)) if v else FALLBACK_DURATIONS[k] for k, v in by_kind.items()}


def instruction_duration(backend, name: str, qargs: tuple[int, ...], typical: dict) -> float:
    """Seconds the instruction ``name`` on physical qubits ``qargs`` lasts on ``backend``: the
    target's duration, 0 for a virtual ``rz``, else the ``typical`` one of its kind."""
    target = getattr(backend, "target", None)
    if target is not None and name in target.operation_names:
        try:
            props = target[name].get(qargs)
        except (KeyError, TypeError):
            props = None
        duration = getattr(props, "duration", None)
        if duration is not None:
            return float(duration)
        if name == "rz":  # virtual on IBM hardware
            return 0.0
    if name == "measure":
        return typical["measure"]
    return typical[2] if len(qargs) >= 2 else typical[1]


def measured_qubits(isa: QuantumCircuit, n_qubits: int) -> list[int]:
    """The physical qubits the ``n_qubits`` logical qubits of ``isa`` end on."""
    layout = isa.layout
    return list(layout.final_index_layout()[:n_qubits]) if layout is not None else list(range(n_qubits))


def schedule(isa: QuantumCircuit, n_qubits: int, backend, typical: dict | None = None) -> Schedule:
    """The :class:`Schedule` of ``isa`` (whose first ``n_qubits`` logical qubits are measured) on
    ``backend``; ``typical``: :func:`typical_durations` of ``backend``, computed when not given."""
    typical = typical_durations(backend) if typical is None else typical
    dt = getattr(getattr(backend, "target", None), "dt", None)
    finish = np.zeros(isa.num_qubits)
    n_two = 0
    for instruction in isa.data:
        op = instruction.operation
        qargs = tuple(isa.find_bit(q).index for q in instruction.qubits)
        if not qargs:
            continue
        start = max(finish[q] for q in qargs)
        if op.name == "barrier":
            duration = 0.0
        elif op.name == "delay":
            value = float(op.duration or 0)
            duration = value * (dt or 0.0) if op.unit == "dt" else value * _DELAY_UNITS[op.unit]
        else:
            duration = instruction_duration(backend, op.name, qargs, typical)
            n_two += len(qargs) == 2
        for q in qargs:
            finish[q] = start + duration
    measures = {q: instruction_duration(backend, "measure", (q,), typical) for q in measured_qubits(isa, n_qubits)}
    critical = max(finish[q] + seconds for q, seconds in measures.items())
    two_depth = isa.depth(filter_function=lambda inst: inst.operation.num_qubits == 2
                          and inst.operation.name != "barrier")
    return Schedule(critical_path_seconds=float(critical), measure_seconds=max(measures.values()),
                    depth=int(isa.depth()), two_qubit_depth=int(two_depth), n_two_qubit_gates=int(n_two))


def backend_rep_delay(backend) -> float | None:
    """The backend's ``default_rep_delay`` in seconds (``BackendV2.default_rep_delay``, or its
    configuration's for IBM and fake backends); None when it reports none."""
    for source in (backend, _configuration(backend)):
        value = getattr(source, "default_rep_delay", None)
        if isinstance(value, (int, float)) and np.isfinite(value) and value >= 0:
            return float(value)
    return None


def _configuration(backend):
    configuration = getattr(backend, "configuration", None)
    try:
        return configuration() if callable(configuration) else configuration
    except Exception:  # noqa: BLE001 - a backend without a configuration reports no delay
        return None


def estimate_runtime(path: Schedule, *, shots: int, n_circuits: int, backend_name: str, executions: int | None = None,
                     calibration: int = 0, per_circuit_overhead: float = 0.0, rep_delay: float = 0.0,
                     n_jobs: int | None = None, job_overhead: float = 0.0) -> RuntimeEstimate:
    """The billed seconds of running ``n_circuits`` parameter sets of the circuit of ``path`` in
    ``n_jobs`` jobs (default: one, none for no circuits): ``executions`` shots each (default
    ``shots``; more with Runtime mitigation), ``calibration`` shots of a readout-calibration
    circuit per job, each shot followed by ``rep_delay``, plus ``job_overhead`` per job and
    ``per_circuit_overhead`` per circuit (the module doc states the formula)."""
    executions = shots if executions is None else executions
    n_circuits = int(n_circuits)
    n_jobs = (1 if n_circuits else 0) if n_jobs is None else int(n_jobs)
    seconds = n_circuits * (executions * (path.critical_path_seconds + rep_delay) + per_circuit_overhead)
    seconds += n_jobs * (calibration * (path.measure_seconds + rep_delay) + job_overhead)
    return RuntimeEstimate(seconds=seconds, critical_path_seconds=path.critical_path_seconds, depth=path.depth,
                           two_qubit_depth=path.two_qubit_depth, n_two_qubit_gates=path.n_two_qubit_gates,
                           shots=shots, n_circuits=n_circuits, backend_name=backend_name,
                           executions_per_circuit=executions, calibration_executions=calibration,
                           rep_delay=float(rep_delay), n_jobs=n_jobs, job_overhead=float(job_overhead))


__all__ = ["DEFAULT_JOB_OVERHEAD", "DEFAULT_PROXY_SHOTS", "DEFAULT_REP_DELAY", "FALLBACK_DURATIONS", "RuntimeEstimate",
           "Schedule", "backend_rep_delay", "estimate_runtime", "instruction_duration", "measured_qubits", "schedule",
           "typical_durations"]
