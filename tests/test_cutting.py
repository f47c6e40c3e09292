"""Cutting cost and cut execution, cross-checked against qiskit-addon-cutting called directly."""

from __future__ import annotations

import itertools
import json
import math
import time

import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit.library import CXGate
from qiskit.quantum_info import PauliList, SparsePauliOp, Statevector
from qiskit_addon_cutting import (
    DeviceConstraints,
    OptimizationParameters,
    cut_wires,
    expand_observables,
    find_cuts,
    generate_cutting_experiments,
    partition_problem,
    reconstruct_expectation_values,
)
from qiskit_addon_cutting.qpd import QPDBasis
from qiskit_addon_cutting.utils.simulation import ExactSampler
from qiskit_aer.primitives import SamplerV2 as AerSampler

from qiskit_qnas import Architecture, cut_execution, cutting
from qiskit_qnas.circuits import z_observables
from qiskit_qnas.cut_execution import cut_expectation_values, run_cut
from qiskit_qnas.cutting import (
    CuttingCost,
    apply_cuts,
    cutting_cost,
    pack_pieces,
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


def fewest_bins(widths, budget):
    """The fewest bins of ``budget`` by brute force over every assignment of pieces to bins."""
    n = len(widths)
    for bins in range(1, n + 1):
        for assignment in itertools.product(range(bins), repeat=n):
            loads = [0] * bins
            for width, b in zip(widths, assignment):
                loads[b] += width
            if max(loads) <= budget:
                return bins
    return n


# --- counting -----------------------------------------------------------------------------------
def test_fits_budget_needs_no_cutting(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("find_cuts must not run for a circuit that fits")

    monkeypatch.setattr(cutting, "find_cuts", boom)
    for budget in (3, 4):
        cost = arch(3).circuit()  # a circuit input: not cached
        cost = cutting_cost(cost, qubit_budget=budget)
        assert (cost.n_subexperiments, cost.n_subcircuits, cost.n_pieces, cost.sampling_overhead) == (1, 1, 1, 1.0)
        assert cost.packing == ((0,),)
        assert cost.exact and cost.cuts == () and cost.n_gate_cuts == cost.n_wire_cuts == 0 and cost.fits


CASES = [  # (architecture, budget): every entangler, ranges, zz (cut RZZ), wire cuts, no-cut partitions
    (arch(4), 2),
    (arch(4), 3),
    (arch(4, layers=2), 2),
    (arch(4, entangler="all"), 2),       # ring: two cuts
    (arch(4, entangler="all"), 3),
    (arch(4, entangler="all", r=2), 2),  # pairs (0,2),(1,3) fall apart without any cut
    (arch(4, entangler="all", r=2), 3),
    (arch(4, entangler="odd"), 2),       # (1,2),(3,0): two partitions, no cut
    (arch(4, entangler="even"), 3),
    (arch(4, layers=2, embedding="angle_x", rotation="rxryrz", entangler=("odd", "even")), 2),
    (arch(4, entangler="none"), 2),      # four idle-free partitions
    (arch(4, embedding="zz"), 2),
    (arch(3, embedding="amplitude"), 2),  # wire cut
    (arch(5, layers=2, entangler=("even", "all"), r=(1, 2)), 3),  # wire cut + gate cuts
    (arch(3, entangler="full"), 2),
    (arch(4, embedding="angle_z", entangler="full"), 3),
]


@pytest.mark.parametrize("candidate, budget", CASES, ids=lambda v: str(v))
def test_counts_match_real_generation(candidate, budget):
    cost = cutting_cost(candidate, qubit_budget=budget)
    backjumps = cutting.BACKJUMPS_PER_SECOND * 5  # what cutting_cost uses at its default time_limit
    cut_qc, meta, problem, experiments, coefficients = direct(candidate.circuit(), budget,
                                                              z_paulis(candidate.n_qubits), backjumps)
    assert cost.n_subexperiments == sum(len(v) for v in experiments.values())
    assert cost.n_qpd_terms == len(coefficients)
    assert cost.n_pieces == len(problem.subcircuits)
    assert all(qc.num_qubits <= budget for qc in problem.subcircuits.values())
    # the devices hold every piece once, within the budget, and are as few as any packing allows
    assert sorted(i for device in cost.packing for i in device) == list(range(cost.n_pieces))
    assert all(sum(cost.partition_widths[i] for i in device) <= budget for device in cost.packing)
    assert cost.n_subcircuits == len(cost.packing) == fewest_bins(cost.partition_widths, budget)
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
    assert apart.cuts == () and apart.exact and apart.n_pieces == 2 and apart.n_subexperiments == 2
    assert apart.n_subcircuits == 2  # two 2-qubit pieces: one device each at budget 2



@pytest.mark.parametrize("n, budget", [(3, 2), (4, 2), (5, 2), (5, 3), (6, 4), (7, 3), (8, 3), (9, 4)])
def test_a_product_circuit_needs_ceil_n_over_budget_devices(n, budget):
    for embedding in ("angle_x", "angle_y"):
        cost = cutting_cost(arch(n, embedding=embedding, entangler="none"), qubit_budget=budget)
        assert cost.cuts == () and cost.n_pieces == n and cost.partition_widths == (1,) * n
        assert cost.n_subcircuits == math.ceil(n / budget)
        assert [len(device) for device in cost.packing].count(budget) == n // budget


def test_a_circuit_that_needs_no_cut_never_needs_more_devices_than_one_that_does():
    """Over a grid of widths, entanglers, ranges and budgets: every candidate needs at least
    ceil(n / budget) devices, and a product circuit (nothing to cut) exactly that, so it never needs
    more than any candidate of its width, cut or not. (A circuit whose uncut pieces are wider, e.g.
    ``odd`` pairs (2, 2, 2) at budget 3, needs 3 devices without a cut: the cut-finder minimises the
    sampling overhead, and its plan is what is counted.)"""
    by_width: dict = {}
    for n in (3, 4, 5, 6):
        for budget in (2, 3):
            if budget >= n:
                continue
            for entangler in ("none", "chain", "odd", "even", "all"):
                for r in sorted({1, min(2, n - 1)}):
                    cost = cutting_cost(arch(n, entangler=entangler, r=r), qubit_budget=budget, time_limit=1.0)
                    assert cost.n_subcircuits >= math.ceil(n / budget)
                    kind = "product" if entangler == "none" else ("cut" if cost.cuts else "uncut")
                    by_width.setdefault((n, budget), {"product": [], "uncut": [], "cut": []})[kind].append(
                        cost.n_subcircuits)
    for (n, budget), found in by_width.items():
        assert found["product"] and found["cut"], (n, budget)
        assert max(found["product"]) == math.ceil(n / budget) <= min(found["cut"] + found["uncut"]), (n, budget)


def test_packing_is_exact_against_brute_force():
    rng = np.random.default_rng(0)
    cases = [([3, 3, 2, 2, 2], 6), ([2, 2, 2, 1, 1, 1, 1], 4), ([4, 3, 3, 2, 2, 2], 8)]
    cases += [(list(rng.integers(1, budget + 1, size=rng.integers(1, 8))), int(budget))
              for budget in rng.integers(2, 7, size=40)]
    dp_used = 0
    for widths, budget in cases:
        packing = pack_pieces(widths, budget)
        assert sorted(i for device in packing for i in device) == list(range(len(widths)))
        assert all(sum(widths[i] for i in device) <= budget for device in packing)
        assert len(packing) == fewest_bins(widths, budget), (widths, budget)
        dp_used += len(cutting._first_fit_decreasing(widths, budget)) > len(packing)
    assert dp_used >= 1  # first-fit decreasing alone misses the optimum in some of these cases
    with pytest.raises(ValueError, match="widths"):
        pack_pieces([3, 1], 2)
    with pytest.raises(ValueError, match="qubit_budget"):
        pack_pieces([1], 0)


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
    assert cost.n_observable_groups > cost.n_pieces
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


def test_a_search_over_dense_entanglers_bounds_and_marks_every_cut_search():
    """The hardest case of the cutting caps: ``full``/``all`` entanglers at 8 qubits, budget 4, in a
    real search; every count is bounded (by the backjump budget, or the clock as a safety net) and
    marked honestly: exact only when no bound stopped the cut finder."""
    from sklearn.datasets import load_digits

    from qiskit_qnas import QNASEstimator, SearchSpace

    cutting.clear_cache()
    X, y = load_digits(return_X_y=True)
    space = SearchSpace(qubits=(8, 8), layers=(1, 3), embeddings=("angle_y",), entanglers=("full", "all"),
                        ranges=(1, 3))
    cap = 1.0
    est = QNASEstimator(search_space=space, qubit_budget=4, population_size=6, n_generations=2,
                        supercircuit_epochs=1, finetune_epochs=0, final_epochs=0, cut_time_limit=cap,
                        random_state=0, verbose=0).fit(X[:200], y[:200])
    candidates = est.result_.candidates
    assert any("full" in c.architecture.entangler and c.architecture.n_qubits == 8 for c in candidates)
    for c in candidates:
        assert c.cutting.stopped_by in (None, "max_backjumps", "time_limit", "max_gamma"), c.architecture.key
        assert c.cutting.exact == (c.cutting.stopped_by is None), c.architecture.key
        assert max(c.cutting.partition_widths) <= 4 and c.n_subcircuits == c.cutting.n_subcircuits >= 2
        assert c.cutting.n_pieces >= c.n_subcircuits


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


def random_point(candidate, n_samples=2, seed=7):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, np.pi, size=(n_samples, candidate.n_inputs)),
            rng.uniform(-np.pi, np.pi, size=candidate.n_weights))


def shot_sigma(cost: CuttingCost, shots: int) -> float:
    """Upper bound on the standard error of a reconstructed <Z_i> with exact QPD weights (CX cuts):
    each term's product of P partition estimates has variance <= (1 + 1/shots)^P - 1 and the terms are
    independent, so sigma <= sqrt(sum_t c_t^2 * ((1 + 1/shots)^P - 1)), sum_t c_t^2 = prod_cuts sum_i c_i^2."""
    assert all(c[0] == "gate" and c[2] == "cx" for c in cost.cuts)
    per_cut = sum(c * c for c in QPDBasis.from_instruction(CXGate()).coeffs)  # 6 x 0.25 = 1.5
    return math.sqrt(per_cut ** len(cost.cuts) * ((1 + 1 / shots) ** cost.n_pieces - 1))


class Recording:
    """A SamplerV2 wrapper that records every ``run`` call's pubs."""

    def __init__(self, sampler):
        self.sampler, self.calls = sampler, []

    def run(self, pubs, *, shots=None):
        pubs = list(pubs)
        self.calls.append(pubs)
        return self.sampler.run(pubs, shots=shots)


EXACT_CASES = [  # all wider than the budget
    (arch(4), 2),                                            # chain: one CX cut
    (arch(5, layers=2), 3),                                  # chain, two layers
    (arch(3, entangler="full"), 2),                          # full: two CX cuts
    (arch(4, entangler="full"), 3),                          # full: three CX cuts, 216 terms
    (arch(3, embedding="zz"), 2),                            # cut RZZ with input-dependent angle: per sample
    (arch(4, layers=2, embedding="angle_x", rotation="rxryrz", entangler=("odd", "even")), 2),
    (arch(5, layers=2, entangler=("even", "all"), r=(1, 2)), 3),  # a wire cut (Move: resets) + 2 CX cuts
    (arch(4, entangler="none"), 2),                          # 4 partitions, nothing cut: 2 devices
    (arch(5, entangler="even", r=2), 3),                     # one cut, pieces (3, 1, 1) on 2 devices
]


@pytest.mark.parametrize("candidate, budget", EXACT_CASES, ids=lambda v: str(v))
def test_exact_cut_expectation_values_equal_uncut(candidate, budget):
    x, w = random_point(candidate)
    run = run_cut(candidate, x, w, qubit_budget=budget, shots=None, num_samples=np.inf)
    got, cost = run.values, run.cost
    assert not cost.fits and max(cost.partition_widths) <= budget
    assert run.exact_weights and run.n_pubs == 0
    assert run.n_subexperiments == cost.n_subexperiments  # the count formula, once more
    assert got.shape == (2, candidate.n_qubits)
    # exact weights and exact sub-experiment distributions: equal up to floating point
    np.testing.assert_allclose(got, exact_z(candidate, x, w), atol=1e-9)


@pytest.mark.parametrize("candidate, shots", [(arch(4), 4096), (arch(3, entangler="full"), 1024)],
                         ids=["chain4", "full3"])
def test_sampled_cut_expectation_values_match_uncut(candidate, shots):
    x, w = random_point(candidate)
    sampler = Recording(AerSampler(seed=11))
    run = run_cut(candidate, x, w, 2, sampler, shots=shots)
    got, cost = run.values, run.cost
    # batched: one sampler job; one pub per sub-experiment, the samples are its parameter sets
    assert len(sampler.calls) == 1 and run.n_jobs == 1
    assert len(sampler.calls[0]) == run.n_pubs == run.n_circuits == cost.n_subexperiments
    assert all(pub[1].shape[0] == 2 for pub in sampler.calls[0])
    # stated tolerance: 4 standard-error bounds (chain4: 4 x 0.027, full3: 4 x 0.066); seeded
    tolerance = 4 * shot_sigma(cost, shots)
    np.testing.assert_allclose(got, exact_z(candidate, x, w), atol=tolerance)
    np.testing.assert_allclose(got, cut_expectation_values(candidate, x, w, 2, shots=None), atol=tolerance)


@pytest.mark.parametrize("candidate, budget", [(arch(4, entangler="none"), 2), (arch(5, entangler="even", r=2), 3)],
                         ids=["product4", "even5"])
def test_pieces_packed_on_one_device_run_as_one_circuit(candidate, budget):
    x, w = random_point(candidate)
    sampler = Recording(AerSampler(seed=6))
    shots = 4096
    run = run_cut(candidate, x, w, budget, sampler, shots=shots)
    got, cost = run.values, run.cost
    assert cost.n_subcircuits < cost.n_pieces
    (pubs,) = sampler.calls
    # one circuit per device and QPD term (1 observable group per piece), not one per piece
    assert len(pubs) == run.n_circuits == cost.n_qpd_terms * cost.n_subcircuits < cost.n_subexperiments
    device_widths = sorted(sum(cost.partition_widths[i] for i in device) for device in cost.packing)
    assert max(device_widths) <= budget
    assert sorted(pub[0].num_qubits for pub in pubs) == sorted(device_widths * cost.n_qpd_terms)  # merged
    assert all(pub[1].shape[0] == 2 for pub in pubs)
    exact = exact_z(candidate, x, w)
    if cost.cuts:
        tolerance = 4 * shot_sigma(cost, shots)
    else:  # nothing cut: every <Z_i> is a plain mean of shots, sigma <= 1/sqrt(shots)
        tolerance = 4 / math.sqrt(shots)
    np.testing.assert_allclose(got, exact, atol=tolerance)


def test_parametrised_cuts_are_generated_per_sample_in_one_job():
    candidate = arch(3, embedding="zz")
    x, w = random_point(candidate)
    sampler = Recording(AerSampler(seed=4))
    run = run_cut(candidate, x, w, 2, sampler, shots=128)
    assert run.values.shape == (2, 3) and np.all(np.abs(run.values) <= 3)
    assert len(sampler.calls) == 1 and len(sampler.calls[0]) == 2 * run.n_subexperiments
    assert all(not pub[0].parameters for pub in sampler.calls[0])  # bound per sample


def test_jobs_are_split_at_the_execution_limit():
    candidate = arch(4)
    x, w = random_point(candidate)
    sampler = Recording(AerSampler(seed=2))
    info = {}
    got = cut_expectation_values(candidate, x, w, 2, sampler, shots=100, max_executions_per_job=2 * 100 * 5,
                                 info=info)
    sizes = [len(call) for call in sampler.calls]
    assert sizes == [5, 5, 2] and info["n_jobs"] == 3 and info["n_pubs"] == 12
    # info= holds what run_cut returns as attributes
    run = run_cut(candidate, x, w, 2, AerSampler(seed=2), shots=100, max_executions_per_job=2 * 100 * 5)
    assert info == run.info() and set(info) == {"cost", "n_subexperiments", "n_circuits", "n_pubs", "n_jobs",
                                                "num_samples", "exact_weights"}
    np.testing.assert_array_equal(got, run.values)


def test_frequencies_reconstruct_exactly_like_the_per_shot_loop():
    """Outcome frequencies through a SamplerResult give reconstruct_expectation_values' own V2 answer."""
    candidate = arch(4)
    x, w = random_point(candidate, n_samples=1)
    bound = candidate.circuit().assign_parameters([*x[0], *w])
    cost = cutting_cost(candidate, qubit_budget=2)
    subcircuits, _, subobservables = cutting._partition(apply_cuts(bound, cost.cuts), bound, z_paulis(4))
    experiments, coefficients = generate_cutting_experiments(subcircuits, subobservables, np.inf)
    sampler = AerSampler(seed=5)
    results = {label: sampler.run(list(circuits), shots=300).result() for label, circuits in experiments.items()}
    per_shot = reconstruct_expectation_values(results, coefficients, subobservables)
    frequencies = {label: [cut_execution._distribution(r, None) for r in result] for label, result in results.items()}
    np.testing.assert_allclose(cut_execution._reconstruct(frequencies, coefficients, subobservables), per_shot,
                               rtol=0, atol=1e-12)


def test_exact_sampler_branches_on_measurements_and_resets_with_the_sampler_paths_keys():
    """The shot-free path's ExactSampler keys outcomes by clbit index; with the registers in the order
    generate_cutting_experiments adds them (observables first, QPD last) that is the sampler path's layout."""
    theta, phi = 1.1, 2.3
    qc = QuantumCircuit(QuantumRegister(2), ClassicalRegister(2, "observable_measurements"),
                        ClassicalRegister(1, "qpd_measurements"))
    qc.ry(theta, 0)
    qc.measure(0, qc.cregs[1][0])   # mid-circuit QPD measurement
    qc.reset(0)
    qc.ry(phi, 0)
    qc.cx(0, 1)
    qc.measure([0, 1], qc.cregs[0])
    a, c = math.sin(theta / 2) ** 2, math.cos(phi / 2) ** 2
    expected = {0b000: (1 - a) * c, 0b011: (1 - a) * (1 - c), 0b100: a * c, 0b111: a * (1 - c)}
    got = ExactSampler().run([qc]).result().quasi_dists[0]
    assert got.keys() == expected.keys()
    assert all(math.isclose(got[k], expected[k], abs_tol=1e-12) for k in expected)
    # the sampler path lays out its keys the same way (qpd bits above the observable bits)
    sampled = cut_execution._distribution(AerSampler(seed=1).run([qc], shots=20000).result()[0], None)
    assert sampled.keys() == expected.keys()
    assert all(abs(sampled[k] - expected[k]) < 0.02 for k in expected)  # sigma <= 0.0036


def test_backend_subexperiments_are_isa_and_noise_free_values_match():
    """A backend transpiles every sub-experiment to ISA circuits; on a noise-free sampler the values match."""
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    backend = FakeManilaV2()
    candidate = arch(4)
    x, w = random_point(candidate)
    sampler = Recording(AerSampler(seed=9))
    shots = 4096
    run = run_cut(candidate, x, w, 2, sampler, shots=shots, seed=3, backend=backend)
    (pubs,) = sampler.calls
    assert len(pubs) == run.n_pubs == 12
    for pub in pubs:
        qc = pub[0]
        assert qc.num_qubits == backend.num_qubits
        for inst in qc.data:
            if inst.operation.name == "barrier":
                continue
            qargs = tuple(qc.find_bit(q).index for q in inst.qubits)
            assert backend.target.instruction_supported(inst.operation.name, qargs), inst.operation.name
    np.testing.assert_allclose(run.values, exact_z(candidate, x, w), atol=4 * shot_sigma(run.cost, shots))


def test_runtime_fake_backend_local_mode_in_a_batch():
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    candidate = arch(3)
    x, w = random_point(candidate, seed=5)
    run = run_cut(candidate, x, w, qubit_budget=2, shots=2048, seed=2, backend=FakeManilaV2(),
                  max_executions_per_job=6 * 2 * 2048)
    got = run.values
    assert run.n_jobs == 2  # 12 sub-experiments x 2 samples x 2048 shots, split in a Runtime Batch
    assert got.shape == (2, 3) and np.all(np.isfinite(got))
    # noisy device (FakeManilaV2's noise model) and QPD estimator: loose, but far from meaningless
    np.testing.assert_allclose(got, exact_z(candidate, x, w), atol=0.4)


def test_fitting_circuit_runs_uncut_through_the_sampler():
    candidate = arch(3)
    x, w = random_point(candidate, seed=3)
    got = cut_expectation_values(candidate, x, w, qubit_budget=3, shots=8192, seed=1)
    np.testing.assert_allclose(got, exact_z(candidate, x, w), atol=0.05)  # sigma <= 1/sqrt(8192) = 0.011
    again = cut_expectation_values(candidate, x, w, qubit_budget=3, shots=8192, seed=1)
    np.testing.assert_array_equal(got, again)  # seeded
    exact = cut_expectation_values(candidate, x[0], w, qubit_budget=3, shots=None)
    np.testing.assert_allclose(exact, exact_z(candidate, x[:1], w), atol=1e-12)


def test_sampled_qpd_is_reproducible():
    candidate = arch(4, entangler="full")
    x, w = random_point(candidate, n_samples=1)
    first = run_cut(candidate, x, w, 3, shots=None, num_samples=50, seed=8)
    assert not first.exact_weights and first.n_subexperiments <= 50 * 2
    np.testing.assert_array_equal(first.values, cut_expectation_values(candidate, x, w, 3, shots=None, num_samples=50,
                                                                seed=8))


def test_run_bounds_and_argument_errors():
    candidate = arch(4, entangler="full")
    x, w = random_point(candidate, n_samples=1)
    wide = arch(4, layers=2, entangler="full")  # 8 CX cuts at budget 2: 6^8 = 1,679,616 joint terms
    with pytest.raises(ValueError, match=r"num_samples=inf: .*1679616 joint terms of 8 cuts"):
        cut_expectation_values(wide, random_point(wide, 1)[0], random_point(wide)[1], 2, num_samples=np.inf)
    with pytest.raises(ValueError, match="max_circuits=100"):
        cut_expectation_values(candidate, x, w, 3, shots=None, max_circuits=100)  # 216 terms x 2 groups
    with pytest.raises(ValueError, match="shots=None"):
        cut_expectation_values(candidate, x, w, 3, AerSampler(), shots=None)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="shots"):
            cut_expectation_values(candidate, x, w, 3, shots=bad)
    with pytest.raises(ValueError, match="num_samples"):
        cut_expectation_values(candidate, x, w, 3, num_samples=0)
    with pytest.raises(ValueError, match="arch"):
        cut_expectation_values(candidate.circuit(), x, w, 3)
    with pytest.raises(ValueError, match="inputs"):
        cut_expectation_values(candidate, np.zeros((0, 4)), w, 3)


def test_cut_samplers_and_targets_share_one_seed_policy():
    """One user seed, one simulator seed: 0 must not run unseeded anywhere (Runtime's local mode
    drops a falsy seed), and the cut circuits' Aer sampler gets the seed the targets use."""
    from qiskit_qnas.seeds import SEED_FOR_ZERO, simulator_seed

    assert simulator_seed(None) is None and simulator_seed(7) == 7 and simulator_seed(0) == SEED_FOR_ZERO != 0
    for seed in (0, 7):
        assert cut_execution._make_sampler(None, None, seed).seed == simulator_seed(seed)
