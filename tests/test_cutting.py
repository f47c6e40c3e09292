"""Cutting cost and cut execution, cross-checked against qiskit-addon-cutting called directly."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import PauliList, SparsePauliOp, Statevector
from qiskit_addon_cutting import (
    DeviceConstraints,
    OptimizationParameters,
    cut_wires,
    expand_observables,
    find_cuts,
    generate_cutting_experiments,
    partition_problem,
)

from qiskit_qnas import Architecture, cutting
from qiskit_qnas.circuits import z_observables
from qiskit_qnas.cutting import (
    CuttingCost,
    apply_cuts,
    cut_expectation_values,
    cutting_cost,
    worst_case_circuit,
)


def arch(n, layers=1, embedding="angle_y", entangler="chain", r=1, rotation="ry"):
    return Architecture(n, layers, embedding, rotation, entangler, r)


def z_paulis(n):
    return PauliList([op.paulis[0] for op in z_observables(n)])


def direct(circuit: QuantumCircuit, budget: int, paulis: PauliList, max_backjumps: int):
    """The whole pipeline with qiskit-addon-cutting alone, generating every sub-experiment."""
    bound = worst_case_circuit(circuit)
    optimization = OptimizationParameters(seed=0, max_gamma=math.inf, max_backjumps=max_backjumps)
    cut_qc, meta = find_cuts(bound, optimization, DeviceConstraints(qubits_per_subcircuit=budget))
    wired = cut_wires(cut_qc)
    problem = partition_problem(wired, observables=expand_observables(paulis, bound, wired))
    experiments, coefficients = generate_cutting_experiments(problem.subcircuits, problem.subobservables,
                                                             np.inf)
    return cut_qc, meta, problem, experiments, coefficients


# --- counting -----------------------------------------------------------------------------------
def test_fits_budget_needs_no_cutting(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("find_cuts must not run for a circuit that fits")

    monkeypatch.setattr(cutting, "find_cuts", boom)
    for budget in (3, 4):
        cost = arch(3).circuit()  # a circuit input: not cached
        cost = cutting_cost(cost, qubit_budget=budget)
        assert (cost.n_subexperiments, cost.n_partitions, cost.sampling_overhead) == (1, 1, 1.0)
        assert cost.exact and cost.cuts == () and cost.n_gate_cuts == cost.n_wire_cuts == 0 and cost.fits


CASES = [  # (architecture, budget): chain, ranged all, zz (cut RZZ), amplitude (wire cut), no-cut partitions
    (arch(4), 2),
    (arch(4), 3),
    (arch(4, layers=2), 2),
    (arch(4, entangler="all", r=2), 2),  # pairs (0,2),(1,3) fall apart without any cut
    (arch(4, entangler="all", r=2), 3),
    (arch(4, embedding="zz"), 2),
    (arch(3, embedding="amplitude"), 2),
    (arch(3, entangler="full"), 2),
]


@pytest.mark.parametrize("candidate, budget", CASES, ids=lambda v: str(v))
def test_counts_match_real_generation(candidate, budget):
    cost = cutting_cost(candidate, qubit_budget=budget)
    backjumps = cutting.BACKJUMPS_PER_SECOND * 5  # what cutting_cost uses at its default time_limit
    cut_qc, meta, problem, experiments, coefficients = direct(candidate.circuit(), budget,
                                                              z_paulis(candidate.n_qubits), backjumps)
    assert cost.n_subexperiments == sum(len(v) for v in experiments.values())
    assert cost.n_qpd_terms == len(coefficients)
    assert cost.n_partitions == len(problem.subcircuits)
    assert all(qc.num_qubits <= budget for qc in problem.subcircuits.values())
    assert max(cost.partition_widths) <= budget
    assert math.isclose(cost.sampling_overhead, meta["sampling_overhead"], rel_tol=1e-9)
    assert math.isclose(cost.sampling_overhead, math.prod(b.overhead for b in problem.bases), rel_tol=1e-9)
    assert len(cost.cuts) == len(meta["cuts"])
    assert cost.exact == bool(meta["minimum_reached"]) or not cost.cuts
    assert math.isclose(cost.log10_subexperiments, math.log10(cost.n_subexperiments))
    # the cut plan, applied to the uncut circuit, is exactly what find_cuts returned
    replayed = apply_cuts(worst_case_circuit(candidate.circuit()), cost.cuts)
    assert [i.operation.name for i in replayed.data] == [i.operation.name for i in cut_qc.data]
    assert [tuple(replayed.find_bit(q).index for q in i.qubits) for i in replayed.data] == \
           [tuple(cut_qc.find_bit(q).index for q in i.qubits) for i in cut_qc.data]


def test_known_cut_costs():
    chain = cutting_cost(arch(4), qubit_budget=2)
    assert chain.cuts == (("gate", 9, "cx"),) and chain.sampling_overhead == 9.0
    assert chain.n_subexperiments == 6 * 2  # 6 QPD terms x (1 Z group per partition) x 2 partitions
    amplitude = cutting_cost(arch(3, embedding="amplitude"), qubit_budget=2)
    assert (amplitude.n_gate_cuts, amplitude.n_wire_cuts) == (3, 1)
    assert amplitude.sampling_overhead == 9.0**3 * 16.0 and amplitude.n_qpd_terms == 6**3 * 8
    apart = cutting_cost(arch(4, entangler="all", r=2), qubit_budget=2)
    assert apart.cuts == () and apart.exact and apart.n_partitions == 2 and apart.n_subexperiments == 2


def test_zz_embedding_is_priced_at_its_worst_angle():
    qc = arch(4, embedding="zz").circuit()
    worst = worst_case_circuit(qc)
    assert not worst.parameters and len(worst.data) == len(qc.data)
    angles = [float(i.operation.params[0]) for i in worst.data if i.operation.name == "rzz"]
    assert angles and all(math.isclose(a, math.pi / 2) for a in angles)
    cost = cutting_cost(qc, qubit_budget=2)
    assert any(c[0] == "gate" and c[2] == "rzz" for c in cost.cuts)
    assert cost.sampling_overhead == 9.0 ** len(cost.cuts)  # every RZZ(pi/2) cut costs like a CX


def test_observable_groups_are_counted_like_the_package():
    qc = arch(4).circuit()
    observables = [SparsePauliOp(["ZIII", "IIIZ"]), "XXII", "IIXZ"]  # X and Z on a qubit do not commute
    cost = cutting_cost(qc, qubit_budget=2, observables=observables)
    paulis = PauliList(["ZIII", "IIIZ", "XXII", "IIXZ"])
    _, _, _, experiments, _ = direct(qc, 2, paulis, 1000)
    assert cost.n_observable_groups > cost.n_partitions
    assert cost.n_subexperiments == sum(len(v) for v in experiments.values())


def test_dense_case_is_bounded_and_honest():
    candidate = arch(10, layers=3, entangler="full")
    start = time.perf_counter()
    cost = cutting_cost(candidate, qubit_budget=4, time_limit=2.0)
    assert time.perf_counter() - start < 2.0 + 1.0
    assert cost.n_subexperiments >= 1 and max(cost.partition_widths) <= 4
    assert cost.exact == (cost.stopped_by is None)
    assert cost.n_gate_cuts + cost.n_wire_cuts == len(cost.cuts) > 0
    # a tiny deadline with an unbounded backjump budget is stopped by the clock, still a valid cutting
    start = time.perf_counter()
    rushed = cutting_cost(candidate.circuit(), qubit_budget=4, time_limit=0.3, max_backjumps=10**9)
    assert time.perf_counter() - start < 0.3 + 1.0
    assert not rushed.exact and rushed.stopped_by == "time_limit"
    assert rushed.n_subexperiments >= 1 and max(rushed.partition_widths) <= 4


def test_no_solution_falls_back_to_cutting_every_two_qubit_gate(monkeypatch):
    def no_solution(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'actions'")

    monkeypatch.setattr(cutting, "find_cuts", no_solution)
    cost = cutting_cost(arch(4).circuit(), qubit_budget=2)
    assert [c[0] for c in cost.cuts] == ["gate"] * 3 and cost.partition_widths == (1, 1, 1, 1)
    assert not cost.exact and cost.stopped_by == "fallback" and cost.n_subexperiments == 6**3 * 4


def test_cache_returns_the_same_object():
    candidate = arch(5, entangler="all")
    cutting.clear_cache()
    first = candidate.cutting_cost(qubit_budget=3, time_limit=1.0)
    before = cutting.cache_info()
    second = candidate.cutting_cost(qubit_budget=3, time_limit=1.0)
    assert second is first
    assert cutting.cache_info()["hits"] == before["hits"] + 1
    assert cutting_cost(candidate, qubit_budget=2, time_limit=1.0) is not first  # other budget, other entry


@pytest.mark.parametrize("budget", [0, -1, 1.5, True, "4", None])
def test_bad_budget_names_the_argument(budget):
    with pytest.raises(ValueError, match="qubit_budget"):
        cutting_cost(arch(3), qubit_budget=budget)


def test_bad_time_limit_and_inputs():
    with pytest.raises(ValueError, match="time_limit"):
        cutting_cost(arch(3), qubit_budget=2, time_limit=0)
    with pytest.raises(ValueError, match="inputs"):
        cut_expectation_values(arch(3), np.zeros((2, 2)), np.zeros(3), qubit_budget=2)
    with pytest.raises(ValueError, match="weights"):
        cut_expectation_values(arch(3), np.zeros((2, 3)), np.zeros(2), qubit_budget=2)


def test_to_dict_round_trip_is_json_safe():
    for cost in (cutting_cost(arch(3, embedding="amplitude"), qubit_budget=2),
                 cutting_cost(arch(10, layers=3, entangler="full"), qubit_budget=4, time_limit=2.0)):
        data = json.loads(json.dumps(cost.to_dict(), allow_nan=False))
        again = CuttingCost.from_dict(data)
        assert again == cost and again.n_subexperiments == cost.n_subexperiments
        assert data["log10_subexperiments"] == pytest.approx(math.log10(cost.n_subexperiments))


# --- running a cut candidate --------------------------------------------------------------------
def exact_z(candidate, x, w):
    qc = candidate.circuit()
    out = []
    for row in x:
        bound = qc.assign_parameters({**dict(zip(candidate.input_params, row)),
                                      **dict(zip(candidate.weight_params, w))})
        state = Statevector(bound)
        out.append([state.expectation_value(op).real for op in z_observables(candidate.n_qubits)])
    return np.array(out)


@pytest.mark.parametrize("candidate, budget", [
    (arch(4), 2),                        # one CX cut, sub-experiments shared by all samples
    (arch(3, entangler="full"), 2),      # two CX cuts
    (arch(3, embedding="zz"), 2),        # cut RZZ with input-dependent angles: generated per sample
], ids=["chain4", "full3", "zz3"])
def test_cut_expectation_values_match_statevector(candidate, budget):
    rng = np.random.default_rng(7)
    x = rng.uniform(0, np.pi, size=(2, candidate.n_inputs))
    w = rng.uniform(-np.pi, np.pi, size=candidate.n_weights)
    assert not cutting_cost(candidate, qubit_budget=budget).fits
    got = cut_expectation_values(candidate, x, w, qubit_budget=budget, shots=2048, seed=11)
    assert got.shape == (2, candidate.n_qubits)
    # exact QPD weights, so only shot noise: with 2 CX cuts the 36 terms have |coefficient| 1/4, so the
    # standard error is about sqrt(36 / 16 / 2048) ~ 0.035; 0.15 is > 4 standard errors (and seeded)
    np.testing.assert_allclose(got, exact_z(candidate, x, w), atol=0.15)


def test_fitting_circuit_runs_uncut_through_the_sampler():
    candidate = arch(3)
    rng = np.random.default_rng(3)
    x, w = rng.uniform(0, np.pi, size=(2, 3)), rng.uniform(-np.pi, np.pi, size=3)
    got = cut_expectation_values(candidate, x, w, qubit_budget=3, shots=8192, seed=1)
    np.testing.assert_allclose(got, exact_z(candidate, x, w), atol=0.05)
    again = cut_expectation_values(candidate, x, w, qubit_budget=3, shots=8192, seed=1)
    np.testing.assert_array_equal(got, again)  # seeded


def test_runtime_fake_backend_local_mode():
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    candidate = arch(3)
    rng = np.random.default_rng(5)
    x, w = rng.uniform(0, np.pi, size=(2, 3)), rng.uniform(-np.pi, np.pi, size=3)
    got = cut_expectation_values(candidate, x, w, qubit_budget=2, shots=2048, seed=2, backend=FakeManilaV2())
    assert got.shape == (2, 3) and np.all(np.isfinite(got))
    # noisy device and QPD estimator: loose, but far from meaningless
    assert np.all(np.abs(got) <= 1.5)
    np.testing.assert_allclose(got, exact_z(candidate, x, w), atol=0.4)
