"""Running a candidate cut into pieces that fit a qubit budget, and reconstructing its ``<Z_i>``.

:func:`run_cut` takes the cut locations of :func:`~qiskit_qnas.cutting.cutting_cost`, applies them
to the circuit with its real parameters, merges the sub-experiments of the pieces packed on one
device into one circuit, executes those of all samples as one batched sampler job (Aer, or IBM
Runtime on a backend with ISA-transpiled circuits; or exactly, through qiskit-addon-cutting's
``ExactSampler``, with ``shots=None``), reconstructs ``<Z_i>`` with ``reconstruct_expectation_values``
and returns them in a :class:`CutRun` with what ran. :func:`cut_expectation_values` returns the
values alone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
from qiskit.circuit import ClassicalRegister, QuantumCircuit
from qiskit.quantum_info import Statevector
from qiskit_addon_cutting import generate_cutting_experiments, reconstruct_expectation_values
from qiskit_addon_cutting.qpd import WeightType
from qiskit_addon_cutting.utils.simulation import ExactSampler

from .circuits import build_circuit
from .cutting import CuttingCost, _as_paulis, _partition, apply_cuts, cutting_cost, pack_pieces
from .isa import isa_pass_manager
from .seeds import simulator_seed
from .spec import ArchitectureSpec
from .validation import check_int, check_parameter_values, is_number

if TYPE_CHECKING:
    from qiskit.primitives import BaseSamplerV2
    from qiskit.providers import BackendV2

__all__ = ["CutRun", "run_cut", "cut_expectation_values"]

#: up to this many joint QPD terms, :func:`cut_expectation_values` uses exact weights by default (6**3 = 216)
EXACT_TERMS_LIMIT = 6**3
#: QPD samples :func:`cut_expectation_values` draws by default above ``EXACT_TERMS_LIMIT`` terms
DEFAULT_QPD_SAMPLES = 1000
#: an explicit ``num_samples=np.inf`` is refused above this many joint terms (6**5 = 7776 passes)
MAX_EXACT_TERMS = 10_000
#: :func:`cut_expectation_values` refuses runs needing more circuits than this (by default)
MAX_CIRCUITS = 200_000
#: executions (circuits x parameter sets x shots) per Sampler job; IBM Quantum's limit for Sampler jobs
MAX_EXECUTIONS_PER_JOB = 10_000_000

_REGISTERS = ("observable_measurements", "qpd_measurements")


def _make_sampler(sampler, backend, seed, mode=None):
    if sampler is not None:
        return sampler
    if backend is not None:
        from qiskit_ibm_runtime import SamplerV2 as RuntimeSampler

        with warnings.catch_warnings():
            # qiskit-ibm-runtime 0.50 deprecates SamplerV2 for a client-side executor Sampler; SamplerV2
            # stays the documented primitive for local testing mode and IBM backends for now
            warnings.filterwarnings("ignore", message=".*SamplerV2 class is deprecated",
                                    category=DeprecationWarning)
            runtime_sampler = RuntimeSampler(mode=backend if mode is None else mode)
        if seed is not None:
            try:  # local testing mode (fake backends) accepts a simulator seed
                runtime_sampler.options.simulator.seed_simulator = simulator_seed(seed)
            except Exception:  # noqa: BLE001 - real backends have no simulator options
                pass
        return runtime_sampler
    from qiskit_aer.primitives import SamplerV2 as AerSampler

    return AerSampler(seed=simulator_seed(seed))


def _pub_executions(pub: tuple, shots: int) -> int:
    rows = pub[1].shape[0] if len(pub) > 1 and np.ndim(pub[1]) == 2 else 1
    return rows * shots


def _chunks(pubs: list, shots: int, max_executions: int) -> list[list]:
    """Consecutive groups of pubs of at most ``max_executions`` executions (circuits x parameter
    sets x shots) each; a pub larger than that alone forms a group."""
    chunks: list[list] = []
    current: list = []
    size = 0
    for pub in pubs:
        executions = _pub_executions(pub, shots)
        if current and size + executions > max_executions:
            chunks.append(current)
            current, size = [], 0
        current.append(pub)
        size += executions
    if current:
        chunks.append(current)
    return chunks


def _run_pubs(pubs: list, shots: int, sampler, backend, seed, max_executions: int) -> tuple[list, int]:
    """Submit every job first (so a service can queue and run them together), then collect the pub
    results in submission order; returns them and the number of jobs. With a ``backend`` and no
    ``sampler``, several jobs share a Runtime ``Batch``."""
    chunks = _chunks(pubs, shots, max_executions)

    def submit(run_sampler):
        jobs = [run_sampler.run(chunk, shots=shots) for chunk in chunks]
        return [pub_result for job in jobs for pub_result in job.result()]

    if sampler is None and backend is not None and len(chunks) > 1:
        from qiskit_ibm_runtime import Batch

        with Batch(backend=backend) as batch:
            return submit(_make_sampler(None, backend, seed, mode=batch)), len(chunks)
    return submit(_make_sampler(sampler, backend, seed)), len(chunks)


def _distribution(pub_result, index: int | None, registers: tuple[str, str] = _REGISTERS) -> dict[int, float]:
    """Outcome frequencies of one (parameter set of a) cutting sub-experiment, keyed like a Sampler V1
    quasi-distribution: ``qpd_bits << n_observable_bits | observable_bits`` (what
    ``reconstruct_expectation_values`` decodes from a ``SamplerResult``). ``registers``: the names of
    the sub-experiment's observable and QPD registers in the circuit that ran (renamed per piece when
    several pieces ran merged on one device)."""
    data = pub_result.data
    try:
        obs, qpd = (getattr(data, name) for name in registers)
    except AttributeError as error:
        raise ValueError(f"the sampler's result lacks the registers {registers[0]!r} and "
                         f"{registers[1]!r} of the cutting sub-experiments") from error
    if index is not None and obs.ndim:
        obs, qpd = obs[index], qpd[index]
    qpd_bytes = qpd.array.shape[-1]
    rows = np.concatenate([qpd.array, obs.array], axis=-1).reshape(-1, qpd_bytes + obs.array.shape[-1])
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    total = counts.sum()
    out = {}
    for row, count in zip(unique, counts):
        qpd_value = int.from_bytes(row[:qpd_bytes].tobytes(), "big")
        obs_value = int.from_bytes(row[qpd_bytes:].tobytes(), "big")
        out[(qpd_value << obs.num_bits) | obs_value] = count / total
    return out


# --- pieces packed on one device run as one circuit -----------------------------------------------
def _packing_of(subcircuits: dict, cost: CuttingCost) -> list[list[Hashable]]:
    """The labels of the pieces on each device: ``cost.packing`` when the pieces are those it was
    computed for (same widths in the same order), else a packing of these pieces."""
    labels = list(subcircuits)
    widths = tuple(subcircuits[label].num_qubits for label in labels)
    packing = cost.packing if widths == cost.partition_widths else pack_pieces(widths, cost.qubit_budget)
    return [[labels[i] for i in device] for device in packing]


def _device_circuits(experiments: dict, devices: list[list[Hashable]]) -> tuple[list[QuantumCircuit], dict]:
    """The circuits that run the sub-experiments ``experiments`` (per piece label) on the devices:
    circuit k of a device puts the k-th sub-experiment of each of its pieces side by side, on
    disjoint qubits, with the pieces' registers renamed apart (a piece alone keeps its circuit).
    Returns the circuits and, per label, ``(circuit index, (observable register, QPD register))``
    of each of its sub-experiments in order. The pieces are independent circuits, so each one's
    outcomes are the marginal of its own registers."""
    circuits: list[QuantumCircuit] = []
    where: dict = {label: [] for label in experiments}
    for device in devices:
        for k in range(max(len(experiments[label]) for label in device)):
            present = [label for label in device if k < len(experiments[label])]
            if len(present) == 1:
                where[present[0]].append((len(circuits), _REGISTERS))
                circuits.append(experiments[present[0]][k])
                continue
            pieces = [experiments[label][k] for label in present]
            merged = QuantumCircuit(sum(piece.num_qubits for piece in pieces))
            offset = 0
            for j, (label, piece) in enumerate(zip(present, pieces)):
                clbits: dict[Any, Any] = {}  # the piece's Clbit -> the merged circuit's
                for register in piece.cregs:
                    renamed = ClassicalRegister(register.size, f"{register.name}_{j}")
                    merged.add_register(renamed)
                    clbits.update(zip(register, renamed))
                merged.compose(piece, qubits=range(offset, offset + piece.num_qubits),
                               clbits=[clbits[c] for c in piece.clbits], inplace=True)
                offset += piece.num_qubits
                where[label].append((len(circuits), tuple(f"{name}_{j}" for name in _REGISTERS)))
            circuits.append(merged)
    return circuits, where


# --- the driver -------------------------------------------------------------------------------------
def _generate(subcircuits, subobservables, num_samples, seed):
    """``generate_cutting_experiments`` with its global-NumPy-RNG sampling made reproducible."""
    if math.isinf(num_samples) or seed is None:
        return generate_cutting_experiments(subcircuits, subobservables, num_samples)
    state = np.random.get_state()
    try:
        np.random.seed(int(seed) % 2**32)
        return generate_cutting_experiments(subcircuits, subobservables, num_samples)
    finally:
        np.random.set_state(state)


def _reconstruct(distributions: dict[Hashable, list[dict[int, float]]], coefficients, subobservables) -> list:
    from qiskit.primitives import SamplerResult
    from qiskit.result import QuasiDistribution

    results = {label: SamplerResult([QuasiDistribution(d) for d in dists], [{} for _ in dists])
               for label, dists in distributions.items()}
    return reconstruct_expectation_values(results, coefficients, subobservables)


def _z_from_distribution(counts: dict[int, float], n: int) -> np.ndarray:
    keys = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    weights = np.fromiter(counts.values(), dtype=float, count=len(counts))
    signs = 1 - 2 * ((keys[None, :] >> np.arange(n)[:, None]) & 1)
    return signs @ weights / weights.sum()


@dataclass(frozen=True)
class CutRun:
    """What :func:`run_cut` computed, and what ran to compute it.

    Attributes:
        values: the reconstructed ``<Z_i>``, shape ``(n_samples, n_qubits)``, in qubit order.
        cost: the :class:`~qiskit_qnas.cutting.CuttingCost` whose cut plan ran.
        n_subexperiments: sub-experiments per sample (the most of any sample when they are
            generated per sample); 1 when the circuit fits and ran uncut.
        n_circuits: circuits per sample after merging the pieces of each device.
        n_pubs: pubs submitted to the sampler (0 with ``shots=None``).
        n_jobs: sampler jobs they were split into (0 with ``shots=None``).
        num_samples: the QPD samples given to ``generate_cutting_experiments`` (``math.inf``: exact
            weights); None when the circuit fits and ran uncut.
        exact_weights: every QPD term ran with its exact weight: always so for ``math.inf``, and for
            a finite ``num_samples`` at least as large as the number of terms.
    """

    values: np.ndarray
    cost: CuttingCost
    n_subexperiments: int
    n_circuits: int
    n_pubs: int
    n_jobs: int
    num_samples: float | None
    exact_weights: bool

    def info(self) -> dict[str, Any]:
        """Every attribute but ``values``: what ``cut_expectation_values(..., info=...)`` fills in."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "values"}


@dataclass(frozen=True)
class _Generated:
    """The cutting experiments of one circuit: per piece label its sub-experiments, their QPD
    coefficients, the pieces' sub-observables, and the pieces packed per device."""

    experiments: dict
    coefficients: list
    subobservables: dict
    devices: list[list[Hashable]]


def _generated(circuit: QuantumCircuit, cost: CuttingCost, paulis, num_samples: float, seed) -> _Generated:
    subcircuits, _, subobservables = _partition(apply_cuts(circuit, cost.cuts), circuit, paulis)
    experiments, coefficients = _generate(subcircuits, subobservables, num_samples, seed)
    return _Generated(experiments, coefficients, subobservables, _packing_of(subcircuits, cost))


def _exact_values(generations: list[_Generated], values: list[dict]) -> np.ndarray:
    """Every sample's ``<Z_i>`` from exact sub-experiment distributions (one generation shared by
    all samples, its circuits keeping parameters, or one bound generation per sample).

    ``ExactSampler`` keys each outcome by clbit index; ``generate_cutting_experiments`` adds the
    ``observable_measurements`` register before ``qpd_measurements``, so the keys are
    ``qpd_bits << n_observable_bits | observable_bits``, the layout ``reconstruct_expectation_values``
    decodes from the ``SamplerResult`` that ``ExactSampler`` returns."""
    sampler = ExactSampler()
    out = []
    for s, v in enumerate(values):
        generation = generations[0] if len(generations) == 1 else generations[s]
        results = {label: sampler.run(circuits, [[v[p] for p in qc.parameters] for qc in circuits]).result()
                   for label, circuits in generation.experiments.items()}
        out.append(reconstruct_expectation_values(results, generation.coefficients, generation.subobservables))
    return np.array(out)


def _uncut_run(circuit: QuantumCircuit, values: list[dict], cost: CuttingCost, shots: int | None, isa, sampler,
               backend, seed, max_executions_per_job: int) -> CutRun:
    """The circuit fits the budget: it runs whole, measured through the sampler, or exactly."""
    n = circuit.num_qubits
    run: dict[str, Any] = dict(cost=cost, n_subexperiments=1, n_circuits=1, num_samples=None, exact_weights=True)
    if shots is None:
        # the probabilities of the final state: no measurement to branch on
        z = [_z_from_distribution(dict(enumerate(Statevector(circuit.assign_parameters(v)).probabilities())), n)
             for v in values]
        return CutRun(np.array(z), n_pubs=0, n_jobs=0, **run)
    (isa_circuit,) = isa([circuit.measure_all(inplace=False)])
    table = np.array([[v[p] for p in isa_circuit.parameters] for v in values])
    (result,), n_jobs = _run_pubs([(isa_circuit, table)], shots, sampler, backend, seed, max_executions_per_job)
    bits = result.data.meas
    out = np.empty((len(values), n))
    for s in range(len(values)):
        counts = bits[s].get_int_counts() if bits.ndim else bits.get_int_counts()
        out[s] = _z_from_distribution(counts, n)
    return CutRun(out, n_pubs=1, n_jobs=n_jobs, **run)


def run_cut(arch: ArchitectureSpec, inputs: Any, weights: Any, qubit_budget: int, sampler: BaseSamplerV2 | None = None,
            shots: int | None = 4096, seed: int | None = None, backend: BackendV2 | None = None,
            time_limit: float = 5.0, num_samples: float | None = None, *, optimization_level: int = 1,
            max_executions_per_job: int = MAX_EXECUTIONS_PER_JOB, max_circuits: int = MAX_CIRCUITS) -> CutRun:
    """``arch``'s circuit run cut into pieces of ``qubit_budget`` qubits: each input row's ``<Z_i>``, and what ran.

    The cut locations are those of :func:`cutting_cost` (found once on the worst-case-bound circuit,
    cached); they are applied to the circuit, then ``cut_wires`` -> ``expand_observables`` ->
    ``partition_problem`` -> ``generate_cutting_experiments``, and ``reconstruct_expectation_values``
    recombines the sub-experiments' outcomes (passed to it as outcome frequencies, which is the same
    estimator as its per-shot loop, only faster). Every sample binds its own input row and the
    shared ``weights``.

    Devices: the pieces are packed on ``CuttingCost.n_subcircuits`` devices (``CuttingCost.packing``);
    the pieces sharing a device run merged: the k-th sub-experiments of all pieces of a device form
    one circuit (side by side on disjoint qubits, at most ``qubit_budget`` of them), so a device of
    pieces with ``n_terms`` sub-experiments each costs ``n_terms`` circuits, not ``n_terms`` per piece
    (a product circuit of 4 qubits at budget 2: 2 circuits instead of 4). Each piece's outcomes are
    the marginal of its own (renamed) registers.

    Batching: all circuits of all samples are submitted as few sampler jobs as possible: one
    ``sampler.run`` with every pub, split only where a job would exceed ``max_executions_per_job``
    (circuits x parameter sets x shots; IBM's limit for Sampler jobs is 10 million); all jobs are
    submitted before any result is awaited (with a ``backend`` and several jobs, inside one Runtime
    ``Batch``). When no cut gate carries a parameter (CX cuts, wire cuts) the sub-experiments are
    generated once, with parameters, and the samples are the parameter sets of one pub per
    sub-experiment (one ISA transpilation for all samples); otherwise (e.g. a cut RZZ of the ``zz``
    embedding, whose QPD depends on the input angle) they are generated and transpiled per sample.

    Exactness: with ``num_samples=np.inf`` the QPD weights are exact, every joint term of the k cuts
    is run (``prod_c T(c)``: 6^k for k gate cuts), and the only error is shot noise. Each term's
    product of P partition estimates has variance at most ``(1 + 1/shots)^P - 1 ~ P/shots``, so the
    standard error of each ``<Z_i>`` is at most ``sqrt(sum_t c_t^2 * ((1 + 1/shots)^P - 1))``
    (``sum_t c_t^2 = 1.5^k`` for k CX cuts: 0.038 for one cut, 2 partitions, 2048 shots). With
    ``shots=None`` the sub-experiments' outcome distributions are computed exactly (qiskit-addon-cutting's
    ``ExactSampler``: state-vector simulation branching on the mid-circuit measurements and resets),
    so the result equals the uncut ``<Z_i>`` up to floating point. Exact weighting enumerates every
    term, so it is bounded:
    by default it is used up to ``EXACT_TERMS_LIMIT`` (216 = 6^3) terms, and above that
    ``generate_cutting_experiments`` gets ``DEFAULT_QPD_SAMPLES`` (1000) samples: it still weights
    exactly when the samples cover every term, and otherwise *samples* the quasi-probability
    distribution (unbiased, with extra variance growing with the sampling overhead). An explicit
    ``num_samples=np.inf`` above ``MAX_EXACT_TERMS`` (10,000) terms, or any run needing more than
    ``max_circuits`` circuits, is refused with a ``ValueError`` before anything runs.

    When the circuit fits the budget it runs uncut (measured, through the same sampler; exactly
    with ``shots=None``).

    Args:
        arch: the architecture.
        inputs: circuit input angles, shape ``(n_samples, len(arch.input_params))`` (one row is also
            accepted).
        weights: the candidate's weights, shape ``(len(arch.weight_params),)``.
        qubit_budget: qubits per device.
        sampler: a ``BaseSamplerV2`` (e.g. Aer's ``SamplerV2``, or Runtime's ``SamplerV2`` in a
            ``Batch``); default Aer's ``SamplerV2`` (seeded by :func:`~qiskit_qnas.seeds.simulator_seed`),
            or, with a ``backend``, ``qiskit_ibm_runtime.SamplerV2`` on it (local testing mode for
            fake backends).
        shots: shots per sub-experiment and parameter set; ``None`` computes the outcome
            distributions exactly instead (no sampler, no backend).
        seed: seeds the simulator and the QPD sampling (None: random).
        backend: when given, sub-experiments are transpiled to ISA circuits with
            ``generate_preset_pass_manager(backend=backend, optimization_level=optimization_level)``
            and run on ``sampler`` or, by default, the backend's Runtime sampler.
        time_limit: passed to :func:`cutting_cost` for finding the cuts.
        num_samples: QPD samples for ``generate_cutting_experiments``: ``np.inf`` for exact weights,
            an integer to sample; default as described under Exactness.
        optimization_level: of the preset pass manager (with a ``backend``).
        max_executions_per_job: split the pubs into jobs of at most this many executions.
        max_circuits: refuse runs needing more circuits (sub-experiments x samples when generated
            per sample).

    Returns:
        A :class:`CutRun`: ``values``, the reconstructed ``<Z_i>`` of shape ``(n_samples, n_qubits)``
        in qubit order, and what ran to compute them.
    """
    if not isinstance(arch, ArchitectureSpec):
        raise ValueError(f"invalid arch={type(arch).__name__}; allowed: an Architecture")
    budget = check_int("qubit_budget", qubit_budget, 1)
    shots = check_int("shots", shots, 1, allow_none=True, allowed="an integer >= 1, or None")
    if is_number(num_samples) and num_samples == math.inf:  # the exact QPD weights
        num_samples = math.inf
    else:
        num_samples = check_int("num_samples", num_samples, 1, allow_none=True,
                                allowed="an integer >= 1, or None, or np.inf")
    max_executions_per_job = check_int("max_executions_per_job", max_executions_per_job, 1)
    max_circuits = check_int("max_circuits", max_circuits, 1)
    if shots is None and (sampler is not None or backend is not None):
        raise ValueError("invalid shots=None with a sampler or backend; shots=None is the exact, "
                         "sampler-free evaluation; allowed with a sampler/backend: an integer >= 1")
    built = build_circuit(arch)
    x_params, w_params = list(built.inputs), list(built.weights)
    x = check_parameter_values("inputs", inputs, len(x_params), rows=True)
    w = check_parameter_values("weights", weights, len(w_params), rows=False)
    n_samples, n = x.shape[0], arch.n_qubits
    circuit = built.circuit.copy()
    values = [{**dict(zip(x_params, row)), **dict(zip(w_params, w))} for row in x]
    if backend is not None:
        pass_manager = isa_pass_manager(backend, optimization_level, None if seed is None else int(seed))
        isa = lambda circuits: pass_manager.run(list(circuits))
    else:
        isa = list

    cost = cutting_cost(arch, qubit_budget=budget, time_limit=time_limit)
    if cost.fits:
        return _uncut_run(circuit, values, cost, shots, isa, sampler, backend, seed, max_executions_per_job)

    cut_gate_ids = [c[1] for c in cost.cuts if c[0] == "gate"]
    parametrised_cuts = any(circuit.data[i].operation.is_parameterized() for i in cut_gate_ids)
    if num_samples is None:
        num_samples = math.inf if cost.n_qpd_terms <= EXACT_TERMS_LIMIT else DEFAULT_QPD_SAMPLES
    if math.isinf(num_samples) and cost.n_qpd_terms > MAX_EXACT_TERMS:
        raise ValueError(f"invalid num_samples=inf: exact QPD weights would enumerate {cost.n_qpd_terms} joint "
                         f"terms of {cost.n_cuts} cuts (more than MAX_EXACT_TERMS={MAX_EXACT_TERMS}); "
                         "allowed: a finite num_samples (samples the quasi-probability distribution), "
                         "or a larger qubit_budget")
    per_sample = min(cost.n_qpd_terms, num_samples) * cost.n_observable_groups
    n_circuits = per_sample * (n_samples if parametrised_cuts or shots is None else 1)
    if n_circuits > max_circuits:
        raise ValueError(f"cutting {arch.key} into {budget}-qubit pieces needs about {int(n_circuits)} circuits "
                         f"({int(per_sample)} sub-experiments{' per sample' if parametrised_cuts else ''}), "
                         f"more than max_circuits={max_circuits}; use a smaller num_samples, fewer samples, a "
                         "larger qubit_budget, or raise max_circuits")

    paulis = _as_paulis(None, n)
    if parametrised_cuts:  # a cut gate's QPD depends on its angle: generated per bound sample
        generations = [_generated(bound, cost, paulis, num_samples, None if seed is None else seed + s)
                       for s, bound in enumerate(circuit.assign_parameters(v) for v in values)]
    else:  # generated once, with parameters; the samples are parameter sets
        generations = [_generated(circuit, cost, paulis, num_samples, seed)]
    devices = [_device_circuits(g.experiments, g.devices) for g in generations]
    run: dict[str, Any] = dict(
        cost=cost, num_samples=num_samples,
        n_subexperiments=max(sum(len(c) for c in g.experiments.values()) for g in generations),
        n_circuits=max(len(merged) for merged, _ in devices),
        exact_weights=all(kind == WeightType.EXACT for g in generations for _, kind in g.coefficients))
    if shots is None:
        return CutRun(_exact_values(generations, values), n_pubs=0, n_jobs=0, **run)

    # per sample: (its generation, {label: [(pub index, registers)]}, its parameter-set index in the pubs)
    pubs: list = []
    located: list[tuple[_Generated, dict, int | None]] = []
    if not parametrised_cuts:
        (generation,), ((merged, where),) = generations, devices
        for qc in isa(merged):
            table = np.array([[v[p] for p in qc.parameters] for v in values])
            pubs.append((qc, table) if qc.num_parameters else (qc,))
        located = [(generation, where, s) for s in range(n_samples)]
    else:
        for generation, (merged, where) in zip(generations, devices):
            offset = len(pubs)
            pubs.extend((qc,) for qc in isa(merged))
            where = {label: [(offset + k, registers) for k, registers in spots] for label, spots in where.items()}
            located.append((generation, where, None))
    results, n_jobs = _run_pubs(pubs, shots, sampler, backend, seed, max_executions_per_job)
    out = np.empty((n_samples, n))
    for s, (generation, where, column) in enumerate(located):
        dists = {label: [_distribution(results[k], column, registers) for k, registers in spots]
                 for label, spots in where.items()}
        out[s] = _reconstruct(dists, generation.coefficients, generation.subobservables)
    return CutRun(out, n_pubs=len(pubs), n_jobs=n_jobs, **run)


def cut_expectation_values(arch: ArchitectureSpec, inputs: Any, weights: Any, qubit_budget: int,
                           sampler: BaseSamplerV2 | None = None, shots: int | None = 4096, seed: int | None = None,
                           backend: BackendV2 | None = None,
                           time_limit: float = 5.0, num_samples: float | None = None, *,
                           optimization_level: int = 1, max_executions_per_job: int = MAX_EXECUTIONS_PER_JOB,
                           max_circuits: int = MAX_CIRCUITS, info: dict | None = None) -> np.ndarray:
    """``<Z_i>`` of ``arch``'s circuit for each input row, run cut into pieces of ``qubit_budget`` qubits:
    ``run_cut(...).values``, shape ``(n_samples, n_qubits)``, in qubit order.

    The arguments are those of :func:`run_cut`. ``info``: a dict given here is filled with
    :meth:`CutRun.info` (``cost``, ``n_subexperiments``, ``n_circuits``, ``n_pubs``, ``n_jobs``,
    ``num_samples``, ``exact_weights``); it stays for callers that read it, while :func:`run_cut`
    returns the same as typed attributes.
    """
    run = run_cut(arch, inputs, weights, qubit_budget, sampler, shots, seed, backend, time_limit, num_samples,
                  optimization_level=optimization_level, max_executions_per_job=max_executions_per_job,
                  max_circuits=max_circuits)
    if info is not None:
        info.update(run.info())
    return run.values
