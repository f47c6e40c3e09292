"""Architecture -> QuantumCircuit: entanglers, parameters, embeddings, transpilation (checked with Qiskit)."""

import itertools

import numpy as np
import pytest
import torch
from qiskit import transpile
from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit.circuit.library import zz_feature_map
from qiskit.quantum_info import Operator, Statevector

from qiskit_qnas import Architecture
from qiskit_qnas.circuits import amplitude_angles, build_circuit, entangler_pairs, weight_slots, z_observables


def bind(arch: Architecture, x, w=None) -> QuantumCircuit:
    built = build_circuit(arch)
    w = np.zeros(arch.n_weights) if w is None else w
    values = dict(zip(built.inputs, np.asarray(x, dtype=float)))
    values.update(zip(built.weights, np.asarray(w, dtype=float)))
    return arch.circuit().assign_parameters(values)


def cx_pairs(qc: QuantumCircuit) -> list[tuple[int, int]]:
    return [tuple(qc.find_bit(q).index for q in i.qubits) for i in qc.data if i.operation.name == "cx"]


# --- entanglers (the DESIGN.md definitions, written out independently) ---------------------------

@pytest.mark.parametrize("n", range(1, 8))
def test_entangler_pairs_follow_the_design(n):
    for r in range(1, max(2, n)):
        ring = [(i, (i + r) % n) for i in range(n)] if n > 1 else []
        assert entangler_pairs("all", n, r) == ring
        assert entangler_pairs("odd", n, r) == [(i, j) for i, j in ring if i % 2 == 1]
        assert entangler_pairs("even", n, r) == [(i, j) for i, j in ring if i % 2 == 0]
        # odd and even split the ring: disjoint, and together all of it
        assert sorted(entangler_pairs("odd", n, r) + entangler_pairs("even", n, r)) == sorted(ring)
    assert entangler_pairs("none", n) == []
    assert entangler_pairs("chain", n) == [(i, i + 1) for i in range(n - 1)]
    assert entangler_pairs("full", n) == list(itertools.combinations(range(n), 2))
    for kind in ("all", "odd", "even", "chain", "full"):
        assert all(c != t and 0 <= c < n and 0 <= t < n for c, t in entangler_pairs(kind, n, 1))


def test_ring_of_range_one_closes_and_full_has_every_pair():
    assert entangler_pairs("all", 4, 1) == [(0, 1), (1, 2), (2, 3), (3, 0)]
    assert entangler_pairs("all", 5, 2) == [(0, 2), (1, 3), (2, 4), (3, 0), (4, 1)]
    assert entangler_pairs("odd", 4, 1) == [(1, 2), (3, 0)]
    assert entangler_pairs("even", 4, 1) == [(0, 1), (2, 3)]
    assert len(entangler_pairs("full", 6)) == 15


def test_invalid_entangler_kind():
    with pytest.raises(ValueError, match="entangler"):
        entangler_pairs("ladder", 4)


def test_circuit_cnots_are_the_layer_entanglers_in_order():
    arch = Architecture(5, 3, "angle_y", "rxry", ("odd", "full", "all"), (2, 1, 3))
    expected = entangler_pairs("odd", 5, 2) + entangler_pairs("full", 5) + entangler_pairs("all", 5, 3)
    assert cx_pairs(arch.circuit()) == expected
    assert cx_pairs(Architecture(4, 2, entangler="none").circuit()) == []


# --- parameters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", [
    Architecture(3, 2, "angle_x", "ry", "chain"),
    Architecture(4, 3, "zz", "rxryrz", ("odd", "even", "all"), (1, 3, 2)),
    Architecture(3, 1, "amplitude", "rxry", "full"),
    Architecture(1, 2, "angle_z", "rxryrz", "none"),
], ids=lambda a: a.key)
def test_parameters_are_x_then_w(arch):
    qc = arch.circuit()
    assert qc.num_qubits == arch.n_qubits
    assert [p.name for p in arch.input_params] == [f"x[{i}]" for i in range(arch.n_inputs)]
    assert [p.name for p in arch.weight_params] == [f"w[{i}]" for i in range(arch.n_weights)]
    assert set(qc.parameters) == set(arch.input_params) | set(arch.weight_params)
    assert qc.num_parameters == arch.n_inputs + arch.n_weights
    n_gates = {"ry": 1, "rxry": 2, "rxryrz": 3}[arch.rotation]
    assert arch.n_weights == arch.n_layers * arch.n_qubits * n_gates
    assert arch.n_inputs == (2**arch.n_qubits - 1 if arch.embedding == "amplitude" else arch.n_qubits)
    assert arch.n_features == (2**arch.n_qubits if arch.embedding == "amplitude" else arch.n_qubits)
    # every weight drives exactly one rotation gate, of the type and on the qubit weight_slots says
    gate_of = {}
    for inst in qc.data:
        for p in inst.operation.params:
            if getattr(p, "name", "").startswith("w["):
                gate_of[p.name] = (inst.operation.name, qc.find_bit(inst.qubits[0]).index)
    names = {0: "rx", 1: "ry", 2: "rz"}
    for k, (_layer, q, slot) in enumerate(weight_slots(arch)):
        assert gate_of[f"w[{k}]"] == (names[slot], q)


def test_circuit_returns_a_fresh_copy():
    arch = Architecture(2, 1)
    qc = arch.circuit()
    qc.x(0)
    assert arch.circuit().size() == qc.size() - 1


def test_z_observables_are_single_qubit_z_in_qubit_order():
    for i, op in enumerate(z_observables(3)):
        label = ["I"] * 3
        label[2 - i] = "Z"  # Qiskit labels are big-endian
        assert op.paulis.to_labels() == ["".join(label)]


# --- transpilation -------------------------------------------------------------------------------

IBM_BASES = [["rz", "sx", "x", "cx"], ["rz", "sx", "x", "ecr"], ["rz", "sx", "x", "cz", "rzz"]]


@pytest.mark.parametrize("arch", [
    Architecture(4, 2, "angle_y", "ry", ("odd", "even")),
    Architecture(3, 2, "amplitude", "rxryrz", ("full", "all"), (1, 2)),
    Architecture(4, 1, "zz", "rxry", "chain"),
    Architecture(3, 1, "angle_z", "rxryrz", "all", 2),
    Architecture(2, 1, "angle_x", "ry", "none"),
], ids=lambda a: a.key)
def test_circuits_transpile_to_ibm_basis_gates(arch):
    qc = arch.circuit()
    for basis in IBM_BASES:
        isa = transpile(qc, basis_gates=basis, optimization_level=1, seed_transpiler=0)
        assert set(isa.count_ops()) <= set(basis) | {"barrier"}
        assert set(isa.parameters) == set(qc.parameters)
    # and the transpiled circuit is the same unitary once bound (global phase included)
    rng = np.random.default_rng(1)
    values = dict(zip(list(qc.parameters), rng.uniform(-np.pi, np.pi, qc.num_parameters)))
    isa = transpile(qc, basis_gates=IBM_BASES[0], optimization_level=1, seed_transpiler=0)
    assert Operator(isa.assign_parameters(values)).equiv(Operator(qc.assign_parameters(values)))


# --- embeddings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", range(1, 9))
def test_amplitude_embedding_prepares_the_normalised_features(n):
    rng = np.random.default_rng(n)
    for trial in range(2):
        features = rng.normal(size=2**n)  # mixed signs
        if trial:
            features[rng.integers(2**n)] = 0.0
            features[0] = -abs(features[0]) - 0.5
        x = amplitude_angles(torch.tensor(features)).numpy()
        arch = Architecture(n, 1, "amplitude", "ry", "none")
        state = Statevector(bind(arch, x, np.zeros(arch.n_weights)))  # zero weights: RY(0) = identity
        assert np.allclose(state.data, features / np.linalg.norm(features), atol=1e-12)


def test_amplitude_embedding_of_negative_and_sparse_vectors():
    for features in ([-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, -2.0], [1.0, -1.0, 1.0, -1.0], [0.0, 3.0, -4.0, 0.0]):
        f = np.array(features)
        x = amplitude_angles(torch.tensor(f)).numpy()
        state = Statevector(bind(Architecture(2, 1, "amplitude", entangler="none"), x))
        assert np.allclose(state.data, f / np.linalg.norm(f), atol=1e-12)


def _old_multiplexor(qc, angles, controls, target):
    """The original recursive construction (nested half-sum expressions), kept as the reference."""
    if not controls:
        qc.ry(angles[0], target)
        return
    half = len(angles) // 2
    low, high = angles[:half], angles[half:]
    _old_multiplexor(qc, [(a + b) / 2 for a, b in zip(low, high)], controls[:-1], target)
    qc.cx(controls[-1], target)
    _old_multiplexor(qc, [(a - b) / 2 for a, b in zip(low, high)], controls[:-1], target)
    qc.cx(controls[-1], target)


@pytest.mark.parametrize("n", range(1, 6))
def test_amplitude_embedding_is_the_recursive_multiplexor_tree(n):
    """Flat Walsh-Hadamard angles: the same gates and, for any inputs, the same unitary as the
    recursive construction with nested expressions."""
    x = ParameterVector("x", 2**n - 1)
    reference = QuantumCircuit(n)
    for k in range(n):
        _old_multiplexor(reference, [x[2**k - 1 + j] for j in range(2**k)], list(range(n - k, n)), n - 1 - k)
    arch = Architecture(n, 1, "amplitude", "ry", "none")
    built = build_circuit(arch)
    embedding = QuantumCircuit(n)
    for inst in built.circuit.data[: len(reference.data)]:
        embedding.append(inst)
    assert [(i.operation.name, [reference.find_bit(q).index for q in i.qubits]) for i in reference.data] == \
        [(i.operation.name, [embedding.find_bit(q).index for q in i.qubits]) for i in embedding.data]
    rng = np.random.default_rng(n)
    for _ in range(2):
        values = rng.uniform(-2 * np.pi, 2 * np.pi, 2**n - 1)
        old = Operator(reference.assign_parameters(dict(zip(x, values))))
        new = Operator(embedding.assign_parameters(dict(zip(built.inputs, values))))
        assert np.allclose(old.data, new.data, atol=1e-12)


def test_amplitude_angles_checks_the_feature_count():
    with pytest.raises(ValueError, match="2\\*\\*n"):
        amplitude_angles(torch.ones(3))
    with pytest.raises(ValueError, match="2\\*\\*n"):
        amplitude_angles(torch.ones(1))


def test_amplitude_angles_are_batched_and_differentiable():
    features = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    angles = amplitude_angles(features)
    assert angles.shape == (5, 7)
    angles.sum().backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
    # zero blocks (even an all-zero vector) give finite gradients
    sparse = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0], [0.0] * 8, [0, 0, 0, 0, 0, 0, 3.0, -4.0]],
                          dtype=torch.float64, requires_grad=True)
    amplitude_angles(sparse).sum().backward()
    assert torch.isfinite(sparse.grad).all()


@pytest.mark.parametrize("n", [1, 2, 3])
def test_angle_embeddings(n):
    rng = np.random.default_rng(n)
    x = rng.uniform(-np.pi, np.pi, n)

    def product(vectors):
        state = np.array([1.0 + 0j])
        for v in vectors:  # qubit 0 is the least significant: kron(v_{n-1}, ..., v_0)
            state = np.kron(v, state)
        return state

    expected = {
        "angle_x": product([np.array([np.cos(a / 2), -1j * np.sin(a / 2)]) for a in x]),
        "angle_y": product([np.array([np.cos(a / 2), np.sin(a / 2)]) for a in x]),
        # H then RZ(x): (e^{-ix/2} |0> + e^{ix/2} |1>) / sqrt 2, the feature in the relative phase
        "angle_z": product([np.array([np.exp(-0.5j * a), np.exp(0.5j * a)]) / np.sqrt(2) for a in x]),
    }
    for embedding, state in expected.items():
        arch = Architecture(n, 1, embedding, "ry", "none")
        assert np.allclose(Statevector(bind(arch, x)).data, state, atol=1e-12)


def test_angle_z_puts_h_then_rz_and_the_state_depends_on_x():
    arch = Architecture(3, 1, "angle_z", "ry", "none")
    qc = arch.circuit()
    for q in range(3):
        ops = [i.operation for i in qc.data if qc.find_bit(i.qubits[0]).index == q]
        assert [o.name for o in ops[:2]] == ["h", "rz"] and ops[1].params[0] == arch.input_params[q]
    a = Statevector(bind(arch, [0.1, 0.2, 0.3])).probabilities()
    # angle_z alone only changes phases: the next rotation layer turns them into populations
    arch2 = Architecture(3, 1, "angle_z", "rxry", "chain")
    w = np.full(arch2.n_weights, 0.7)
    s1, s2 = Statevector(bind(arch2, [0.1, 0.2, 0.3], w)), Statevector(bind(arch2, [1.1, -0.2, 2.3], w))
    assert np.allclose(a, 1 / 8)
    assert not np.allclose(s1.probabilities(), s2.probabilities(), atol=1e-3)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_zz_embedding_matches_qiskits_zz_feature_map(n):
    """Ours: H, RZ(2 x_i), RZZ(2 (pi - x_i)(pi - x_j)) on neighbours; Qiskit's ZZ feature map (one
    repetition, linear entanglement) uses P and CX-P-CX: equal up to a global phase."""
    rng = np.random.default_rng(n)
    x = rng.uniform(-np.pi, np.pi, n)
    reference = zz_feature_map(n, reps=1, entanglement="linear")
    ref_state = Statevector(reference.assign_parameters(dict(zip(reference.parameters, x))))
    ours = Statevector(bind(Architecture(n, 1, "zz", "ry", "none"), x))
    assert ours.equiv(ref_state)
    overlap = abs(np.vdot(ref_state.data, ours.data))
    assert overlap == pytest.approx(1.0, abs=1e-12)
