"""The torch statevector engine, cross-checked against Qiskit: values against ``Statevector``, gradients
against ``EstimatorQNN`` over ``StatevectorEstimator`` (parameter shift, exact precision)."""

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterExpression, ParameterVector
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.neural_networks import EstimatorQNN

from qiskit_qnas import EMBEDDINGS, ENTANGLERS, ROTATIONS, Architecture
from qiskit_qnas.circuits import amplitude_angles, build_circuit, make_qnn, z_observables
from qiskit_qnas.engines import RYTreePreparation, StatevectorConnector, StatevectorProgram, StatevectorQNN
from qiskit_qnas.model import HQNN, train_model

#: a systematic subset: every embedding, rotation and entangler, every n in 1..6 and L in 1..3,
#: ranges > 1 where n allows, and mixed per-layer entanglers
ARCHS = [
    Architecture(1, 1, "angle_x", "ry", "none"),
    Architecture(1, 2, "amplitude", "rxry", "all"),
    Architecture(1, 3, "zz", "rxryrz", "chain"),
    Architecture(2, 1, "angle_y", "rxryrz", "all"),
    Architecture(2, 2, "angle_z", "ry", ("odd", "even")),
    Architecture(2, 3, "amplitude", "ry", ("full", "none", "all")),
    Architecture(3, 1, "zz", "rxry", "full"),
    Architecture(3, 2, "angle_x", "rxryrz", "all", 2),
    Architecture(3, 3, "amplitude", "rxryrz", ("odd", "even", "all"), (2, 1, 2)),
    Architecture(4, 1, "amplitude", "ry", "odd"),
    Architecture(4, 2, "angle_y", "ry", ("odd", "even")),
    Architecture(4, 3, "angle_z", "rxry", ("all", "chain", "full"), (3, 1, 1)),
    Architecture(5, 1, "angle_x", "rxry", "even", 2),
    Architecture(5, 2, "zz", "ry", ("all", "odd"), (4, 3)),
    Architecture(5, 3, "angle_y", "rxry", ("chain", "even", "odd"), (1, 4, 2)),
    Architecture(5, 1, "amplitude", "rxry", "even", 3),
    Architecture(6, 1, "zz", "rxryrz", "all", 5),
    Architecture(6, 2, "angle_z", "ry", ("even", "full"), (3, 1)),
    Architecture(6, 3, "angle_x", "ry", ("chain", "all", "odd"), (1, 2, 4)),
    Architecture(6, 2, "angle_y", "rxry", "none"),
    Architecture(2, 2, "dense", "rxryrz", "all"),
    Architecture(4, 1, "dense", "ry", "chain"),
]


def test_the_subset_covers_the_vocabulary():
    assert {a.embedding for a in ARCHS} == set(EMBEDDINGS)
    assert {a.rotation for a in ARCHS} == set(ROTATIONS)
    assert {e for a in ARCHS for e in a.entangler} == set(ENTANGLERS)
    assert {a.n_qubits for a in ARCHS} == set(range(1, 7))
    assert {a.n_layers for a in ARCHS} == {1, 2, 3}
    assert any(r > 1 for a in ARCHS for r in a.entangle_range)
    assert any(len(set(a.entangler)) > 1 for a in ARCHS)


def sample(arch: Architecture, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if arch.embedding == "amplitude":  # angles of real feature vectors, and arbitrary angles
        x = amplitude_angles(torch.tensor(rng.normal(size=(batch, arch.n_features)))).numpy()
        x[-1] = rng.uniform(-2 * np.pi, 2 * np.pi, arch.n_inputs)
    else:
        x = rng.uniform(-np.pi, np.pi, (batch, arch.n_inputs))
    return x, rng.uniform(-np.pi, np.pi, arch.n_weights)


def qiskit_expectations(arch: Architecture, x: np.ndarray, w: np.ndarray, observables=None) -> np.ndarray:
    built = build_circuit(arch)
    observables = observables or z_observables(arch.n_qubits)
    rows = []
    for xi in x:
        values = dict(zip(built.inputs, xi)) | dict(zip(built.weights, w))
        state = Statevector(built.circuit.assign_parameters(values))
        rows.append([state.expectation_value(o).real for o in observables])
    return np.array(rows)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.key)
def test_forward_equals_qiskit_statevector(arch):
    x, w = sample(arch, 3, seed=arch.n_qubits * 10 + arch.n_layers)
    qnn = arch.qnn(engine="statevector")
    assert isinstance(qnn, StatevectorQNN)
    out = qnn.forward(x, w)
    assert out.shape == (3, arch.n_qubits)
    assert np.allclose(out, qiskit_expectations(arch, x, w), atol=1e-10, rtol=0)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.key)
def test_gradients_equal_estimator_qnn(arch):
    x, w = sample(arch, 2, seed=arch.n_qubits * 10 + arch.n_layers + 1)
    ours = arch.qnn(engine="statevector", input_gradients=True)
    reference = arch.qnn(engine="estimator", input_gradients=True)
    assert isinstance(reference, EstimatorQNN)
    assert np.allclose(ours.forward(x, w), reference.forward(x, w), atol=1e-10, rtol=0)
    dx, dw = ours.backward(x, w)
    ref_dx, ref_dw = reference.backward(x, w)
    assert dx.shape == ref_dx.shape == (2, arch.n_qubits, arch.n_inputs)
    assert dw.shape == ref_dw.shape == (2, arch.n_qubits, arch.n_weights)
    assert np.allclose(dx, ref_dx, atol=1e-6, rtol=0)
    assert np.allclose(dw, ref_dw, atol=1e-6, rtol=0)
    # without input gradients only the weights are differentiated
    dx, dw2 = arch.qnn(engine="statevector").backward(x, w)
    assert dx is None and np.allclose(dw2, ref_dw, atol=1e-6, rtol=0)


def test_wide_amplitude_embedding_compiles_to_affine_angles_and_is_exact():
    arch = Architecture(7, 1, "amplitude", "ry", "chain")
    built = build_circuit(arch)
    program = StatevectorProgram(built.circuit, built.inputs, built.weights)
    kinds = [a.kind for a in program._angles]
    assert kinds.count("affine") == 2**7 - 2  # every multiplexed RY (one plain RY at the root)
    features = torch.tensor(np.random.default_rng(0).normal(size=(2, 2**7)))
    psi = program.state(amplitude_angles(features), torch.zeros(arch.n_weights))
    # zero weights: the rotation layer is the identity, the chain of CNOTs permutes the amplitudes
    chain = QuantumCircuit(7)
    for q in range(6):
        chain.cx(q, q + 1)
    for row, f in zip(psi, features.numpy()):
        expected = Statevector(f / np.linalg.norm(f)).evolve(chain).data
        assert np.allclose(row.numpy(), expected, atol=1e-12)


def test_non_default_observables():
    arch = Architecture(3, 2, "angle_z", "rxryrz", ("full", "odd"))
    built = build_circuit(arch)
    observables = [SparsePauliOp.from_list([("ZZI", 1.0)]), SparsePauliOp.from_list([("IZI", 0.5), ("ZIZ", -0.3)]),
                   SparsePauliOp.from_list([("III", 2.0)]), SparsePauliOp.from_list([("ZZZ", 1.0), ("IIZ", 0.25)])]
    ours = StatevectorQNN(built.circuit, built.inputs, built.weights, observables, input_gradients=True)
    reference = EstimatorQNN(circuit=built.circuit, observables=observables, input_params=list(built.inputs),
                             weight_params=list(built.weights), estimator=StatevectorEstimator(),
                             input_gradients=True, default_precision=0.0)
    x, w = sample(arch, 2, seed=5)
    assert ours.output_shape == (4,)
    assert np.allclose(ours.forward(x, w), qiskit_expectations(arch, x, w, observables), atol=1e-10, rtol=0)
    for a, b in zip(ours.backward(x, w), reference.backward(x, w)):
        assert np.allclose(a, b, atol=1e-6, rtol=0)


def test_mis_sized_observables_and_measurements_are_rejected():
    """(X and Y observables are measured: tests/test_qnn_breadth.py.)"""
    arch = Architecture(2, 1)
    built = build_circuit(arch)
    with pytest.raises(ValueError, match="diagonal"):  # the wrong number of qubits
        StatevectorQNN(built.circuit, built.inputs, built.weights, [SparsePauliOp.from_list([("ZII", 1.0)])])
    measured = built.circuit.copy()
    measured.measure_all()
    with pytest.raises(ValueError, match="measurements"):
        StatevectorQNN(measured, built.inputs, built.weights)
    stray = built.circuit.copy()
    stray.rz(Parameter("theta"), 0)
    with pytest.raises(ValueError, match="theta"):
        StatevectorQNN(stray, built.inputs, built.weights)


def test_wrong_shapes_are_rejected():
    arch = Architecture(3, 1)
    qnn = arch.qnn()
    with pytest.raises(Exception, match="incorrect shape"):
        qnn.forward(np.zeros((2, 4)), np.zeros(arch.n_weights))
    with pytest.raises(ValueError):
        qnn.forward(np.zeros((2, 3)), np.zeros(arch.n_weights + 1))
    program = qnn.program
    with pytest.raises(ValueError, match="inputs must have shape"):
        program.expectation(torch.zeros(2, 4), torch.zeros(arch.n_weights))
    with pytest.raises(ValueError, match="weights must have"):
        program.expectation(torch.zeros(2, 3), torch.zeros(arch.n_weights + 2))
    with pytest.raises(ValueError, match="engine"):
        make_qnn(arch, engine="gpu")
    with pytest.raises(ValueError, match="estimator"):
        make_qnn(arch, engine="statevector", estimator=StatevectorEstimator())


def test_batch_of_one_and_unbatched_input():
    arch = Architecture(3, 2, "angle_x", "rxry", "all")
    x, w = sample(arch, 1, seed=7)
    qnn = arch.qnn(input_gradients=True)
    expected = qiskit_expectations(arch, x, w)
    assert np.allclose(qnn.forward(x, w), expected, atol=1e-10)
    single = qnn.forward(x[0], w)  # a 1-D input is one sample
    assert single.shape == (1, 3) and np.allclose(single, expected, atol=1e-10)
    dx, dw = qnn.backward(x[0], w)
    assert dx.shape == (1, 3, arch.n_inputs) and dw.shape == (1, 3, arch.n_weights)


def test_backward_without_a_preceding_forward_and_on_other_data():
    arch = Architecture(3, 2, "zz", "ry", "chain")
    qnn, reference = arch.qnn(input_gradients=True), arch.qnn(engine="estimator", input_gradients=True)
    x, w = sample(arch, 2, seed=8)
    x2, _ = sample(arch, 2, seed=9)
    qnn.forward(x, w)  # keeps its graph for x; backward on x2 must not reuse it
    for a, b in zip(qnn.backward(x2, w), reference.backward(x2, w)):
        assert np.allclose(a, b, atol=1e-6)


def test_backward_without_the_kept_final_state(monkeypatch):
    """Batches too large to keep their final state between forward and backward recompute it."""
    arch = Architecture(4, 1, "angle_y", "ry", "chain")
    qnn = arch.qnn(input_gradients=True)
    monkeypatch.setattr(qnn, "TRACE_FORWARD_BELOW", 2**4 * 3)
    x, w = sample(arch, 5, seed=10)
    out = qnn.forward(x, w)
    assert qnn._last is None
    assert np.allclose(out, qiskit_expectations(arch, x, w), atol=1e-10)
    dx, dw = qnn.backward(x, w)
    ref_dx, ref_dw = arch.qnn(engine="estimator", input_gradients=True).backward(x, w)
    assert np.allclose(dx, ref_dx, atol=1e-6) and np.allclose(dw, ref_dw, atol=1e-6)
    qnn.forward(x[:2], w)  # small enough: kept, and used by the next backward on the same data
    assert qnn._last is not None
    dx2, dw2 = qnn.backward(x[:2], w)
    assert np.allclose(dx2, ref_dx[:2], atol=1e-6) and np.allclose(dw2, ref_dw[:2], atol=1e-6)


def test_torch_connector_round_trip():
    """Plain ``TorchConnector`` over our QNN: its backward runs inside torch's backward pass (grad mode
    off), where the zz embedding's angle expressions must still be differentiated."""
    arch = Architecture(3, 2, "zz", "rxry", ("odd", "full"))
    x, w = sample(arch, 4, seed=11)
    layers = {}
    for engine in ("statevector", "estimator"):
        layers[engine] = TorchConnector(arch.qnn(engine=engine, input_gradients=True), initial_weights=w)
    grads = {}
    for engine, layer in layers.items():
        inputs = torch.tensor(x, requires_grad=True)
        out = layer(inputs)
        assert out.shape == (4, 3)
        (out * torch.arange(1.0, 4.0, dtype=out.dtype)).sum().backward()
        grads[engine] = (out.detach().numpy(), inputs.grad.numpy(), layer.weight.grad.numpy())
    for ours, reference in zip(grads["statevector"], grads["estimator"]):
        assert np.allclose(ours, reference, atol=1e-6)
    assert np.allclose(grads["statevector"][0], qiskit_expectations(arch, x, w), atol=1e-10)


def test_general_circuit_with_expressions_and_other_gates():
    """A hand-written circuit: expressions of inputs and weights, controlled rotations, U, P, S, SX,
    SWAP, CCX, CZ, RZZ, with inputs and weights interleaved."""
    x, w = ParameterVector("a", 2), ParameterVector("b", 4)
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.sx(1)
    qc.ry(0.5 * x[0] - w[0] + 0.25, 2)
    qc.cx(0, 1)
    qc.rzz(w[1] * 2, 1, 2)
    qc.crx(x[1] + w[2], 2, 0)
    qc.u(w[3], x[0], 0.3, 1)
    qc.p(x[0] * x[1], 2)
    qc.swap(0, 2)
    qc.ccx(0, 1, 2)
    qc.s(0)
    qc.cz(1, 2)
    qc.rx((x[1] - 1.5) / 3, 0)
    qc.cry(w[1], 1, 0)
    observables = z_observables(3) + [SparsePauliOp.from_list([("ZZI", 1.0)])]
    ours = StatevectorQNN(qc, list(x), list(w), observables, input_gradients=True)
    reference = EstimatorQNN(circuit=qc, observables=observables, input_params=list(x), weight_params=list(w),
                             estimator=StatevectorEstimator(), input_gradients=True, default_precision=0.0)
    rng = np.random.default_rng(12)
    xs, ws = rng.uniform(-2, 2, (2, 2)), rng.uniform(-2, 2, 4)
    expected = [[Statevector(qc.assign_parameters(dict(zip(x, xi)) | dict(zip(w, ws)))).expectation_value(o).real
                 for o in observables] for xi in xs]
    assert np.allclose(ours.forward(xs, ws), expected, atol=1e-10)
    for a, b in zip(ours.backward(xs, ws), reference.backward(xs, ws)):
        assert np.allclose(a, b, atol=1e-6)


def test_affine_angles_are_read_exactly():
    """Gate angles that are affine in the parameters are recognised (and computed) as such."""
    x, w = ParameterVector("x", 3), ParameterVector("w", 2)
    qc = QuantumCircuit(1)
    names = {p.name: p for p in list(x) + list(w)}
    angles = [0.5 * (x[0] + 1) - 3 * x[1] / 2, 2 - x[0], (x[0] - x[1]) * (-0.5), x[2] / 3 + w[1] * 1e-5,
              -(x[0] - 2 * w[1]) / 4, x[0] * 1e-8 - 7,
              ParameterExpression(names, "-x[2]+w[0]-x[1]+x[2]") * 0.125,  # flat: (terms)*c
              (x[0] + 2) * 0.5,
              2 / x[0], x[0] * x[1], x[2] ** 2, (x[1] + w[0]).sin()]
    for angle in angles:
        qc.ry(angle, 0)
    program = StatevectorProgram(qc, list(x), list(w))
    assert [a.kind for a in program._angles] == ["affine"] * 8 + ["expr"] * 4
    xs, ws = np.array([[0.3, -1.2, 0.7]]), np.array([0.4, -0.9])
    values = dict(zip(x, xs[0])) | dict(zip(w, ws))
    for angle, compiled in zip(angles, program._angles):
        expected = float(angle.bind(values, allow_unknown_parameters=True))
        assert float(compiled(torch.tensor(xs), torch.tensor(ws))) == pytest.approx(expected, abs=1e-13)


@pytest.mark.parametrize("sweep_prefix", [True, False], ids=["adjoint-prefix", "autograd-prefix"])
@pytest.mark.parametrize("arch", [
    Architecture(3, 2, "angle_z", "rxryrz", ("all", "odd")),
    Architecture(3, 2, "amplitude", "rxry", "full"),
    Architecture(4, 1, "zz", "ry", "chain"),
    Architecture(2, 2, "angle_x", "ry", "all"),
], ids=lambda a: a.key)
def test_both_ways_of_differentiating_the_leading_gates(monkeypatch, arch, sweep_prefix):
    """Small circuits sweep back through the leading one-qubit gates, wide ones differentiate their
    product state by autograd: both equal EstimatorQNN."""
    monkeypatch.setattr(StatevectorProgram, "PREFIX_SWEEP_MAX", 2**20 if sweep_prefix else 1)
    x, w = sample(arch, 2, seed=13)
    ours = arch.qnn(input_gradients=True)
    reference = arch.qnn(engine="estimator", input_gradients=True)
    for a, b in zip(ours.backward(x, w), reference.backward(x, w)):
        assert np.allclose(a, b, atol=1e-6, rtol=0)
    # per-sample weights (2-D) and a state computed on the fly give the same Jacobians
    program = ours.program
    out, dx, dw = program.jacobians(torch.tensor(x), torch.tensor(np.stack([w, w])), input_gradients=True)
    assert np.allclose(out.numpy(), ours.forward(x, w), atol=1e-12)
    assert np.allclose(dw.numpy(), reference.backward(x, w)[1], atol=1e-6)
    _, dx_none, _ = program.jacobians(torch.tensor(x), torch.tensor(w), input_gradients=False)
    assert dx_none is None


@pytest.mark.parametrize("sweep_prefix", [True, False], ids=["adjoint-prefix", "autograd-prefix"])
@pytest.mark.parametrize("arch", [
    Architecture(3, 2, "angle_z", "rxryrz", ("all", "odd")),
    Architecture(3, 2, "amplitude", "rxry", "full"),
    Architecture(4, 2, "zz", "ry", ("chain", "even")),
    Architecture(1, 1, "angle_y", "ry", "none"),
], ids=lambda a: a.key)
def test_statevector_connector_trains_like_torch_connector_over_estimator_qnn(monkeypatch, arch, sweep_prefix):
    """The vector-Jacobian backward of ``StatevectorConnector`` gives EstimatorQNN's values and
    gradients through the plain ``TorchConnector`` (batched and single-sample inputs)."""
    monkeypatch.setattr(StatevectorProgram, "PREFIX_SWEEP_MAX", 2**20 if sweep_prefix else 1)
    x, w = sample(arch, 3, seed=17)
    ours = StatevectorConnector(arch.qnn(input_gradients=True), initial_weights=w)
    reference = TorchConnector(arch.qnn(engine="estimator", input_gradients=True), initial_weights=w)
    assert isinstance(ours, TorchConnector)
    g = torch.tensor(np.random.default_rng(3).normal(size=(3, arch.n_qubits)), dtype=torch.float)
    for rows in (slice(None), 1):  # a batch, and one sample as a 1-D input
        results = []
        for layer in (ours, reference):
            layer.zero_grad()
            inputs = torch.tensor(x[rows], requires_grad=True)
            out = layer(inputs)
            (out * g[rows]).sum().backward()
            results.append((out.detach().numpy(), inputs.grad.numpy(), layer.weight.grad.numpy()))
        for a, b in zip(*results):
            assert a.shape == b.shape and np.allclose(a, b, atol=1e-6, rtol=0)


def test_vjp_equals_contracted_jacobians():
    arch = Architecture(4, 2, "angle_x", "rxryrz", ("full", "odd"))
    x, w = (torch.tensor(a) for a in sample(arch, 5, seed=18))
    program = arch.qnn().program
    g = torch.tensor(np.random.default_rng(4).normal(size=(5, 4)))
    out, dx, dw = program.jacobians(x, w)
    out_v, dx_v, dw_v = program.vjp(x, w, g)
    assert torch.allclose(out, out_v, atol=1e-14)
    assert torch.allclose(torch.einsum("bk,bki->bi", g, dx), dx_v, atol=1e-12)
    assert torch.allclose(torch.einsum("bk,bki->bi", g, dw), dw_v, atol=1e-12)
    assert program.vjp(x, w, g, input_gradients=False)[1] is None
    with pytest.raises(ValueError, match="grad_outputs must have shape"):
        program.vjp(x, w, g[:, :2])


def test_state_and_expectation_stay_differentiable_by_autograd():
    """``state``/``expectation`` (used by the SuperCircuit) keep a torch graph: autograd gradients
    equal the adjoint Jacobians."""
    arch = Architecture(3, 2, "angle_x", "rxry", ("odd", "all"))
    x, w = sample(arch, 2, seed=14)
    program = arch.qnn().program
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    out = program.expectation(xt, wt)
    assert program.state(xt, wt).shape == (2, 8)
    out[:, 1].sum().backward()
    _, dx, dw = program.jacobians(torch.tensor(x), torch.tensor(w))
    assert torch.allclose(xt.grad, dx[:, 1], atol=1e-10)
    assert torch.allclose(wt.grad, dw[:, 1].sum(0), atol=1e-10)


# --- the amplitude embedding's closed-form state preparation ---------------------------------------

#: n = 1..6 qubits, every rotation block, several entanglers and ranges
TREE_ARCHS = [
    Architecture(1, 2, "amplitude", "rxryrz", "none"),
    Architecture(2, 2, "amplitude", "ry", ("all", "odd")),
    Architecture(3, 2, "amplitude", "rxry", ("full", "even"), (1, 2)),
    Architecture(3, 1, "amplitude", "rxryrz", "chain"),
    Architecture(4, 2, "amplitude", "rxryrz", ("odd", "all"), (2, 3)),
    Architecture(4, 1, "amplitude", "ry", "none"),
    Architecture(5, 2, "amplitude", "ry", ("chain", "full")),
    Architecture(5, 1, "amplitude", "rxry", "all", 3),
    Architecture(6, 2, "amplitude", "rxry", ("odd", "odd")),
    Architecture(6, 1, "amplitude", "rxryrz", "even", 5),
]


def tree_inputs(arch: Architecture, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tree angles of: normal features (negative entries), features with zero blocks and negative
    entries, a feature vector of norm ~1e-12, an all-zero vector, and arbitrary angles in (-2pi, 2pi)."""
    rng = np.random.default_rng(seed)
    d = arch.n_features
    features = rng.normal(size=(5, d))
    features[1, : d // 2] = 0.0
    features[1, -1] = -abs(features[1, -1])
    features[2] *= 1e-12
    features[3] = 0.0
    x = amplitude_angles(torch.tensor(features)).numpy()
    x[4] = rng.uniform(-2 * np.pi, 2 * np.pi, arch.n_inputs)
    return x, rng.uniform(-np.pi, np.pi, arch.n_weights)


def gate_by_gate(arch: Architecture) -> StatevectorProgram:
    built = build_circuit(arch)
    return StatevectorProgram(built.circuit, built.inputs, built.weights)


def test_the_tree_archs_cover_every_width_and_rotation():
    assert {a.n_qubits for a in TREE_ARCHS} == set(range(1, 7))
    assert {a.rotation for a in TREE_ARCHS} == set(ROTATIONS)
    assert len({e for a in TREE_ARCHS for e in a.entangler}) >= 5


@pytest.mark.parametrize("arch", TREE_ARCHS, ids=lambda a: a.key)
def test_tree_preparation_equals_statevector_and_the_gate_by_gate_engine(arch):
    built = build_circuit(arch)
    tree = built.circuit.data[:built.preparation.n_instructions]  # the embedding, up to the first weight
    assert [i.operation.name for i in tree].count("ry") == 2**arch.n_qubits - 1
    assert {i.operation.name for i in tree} <= {"ry", "cx"}
    assert built.circuit.data[len(tree)].operation.params[0] == built.weights[0]
    program = arch.qnn().program
    assert not any(a.batched for a in program._angles)  # no gate of the tree is simulated
    x, w = tree_inputs(arch, seed=arch.n_qubits)
    psi = program.state(torch.tensor(x), torch.tensor(w)).numpy()
    for row, xi in zip(psi, x):
        values = dict(zip(built.inputs, xi)) | dict(zip(built.weights, w))
        assert np.allclose(row, Statevector(built.circuit.assign_parameters(values)).data, atol=1e-10, rtol=0)
    assert np.allclose(psi, gate_by_gate(arch).state(torch.tensor(x), torch.tensor(w)).numpy(), atol=1e-10)
    assert np.allclose(arch.qnn().forward(x, w), qiskit_expectations(arch, x, w), atol=1e-10, rtol=0)


@pytest.mark.parametrize("arch", TREE_ARCHS, ids=lambda a: a.key)
def test_tree_preparation_gradients_equal_the_gate_by_gate_autograd(arch):
    """Adjoint Jacobians, vector-Jacobian products and autograd of the closed form against autograd
    through every gate of the tree."""
    x, w = (torch.tensor(a) for a in tree_inputs(arch, seed=arch.n_qubits + 20))
    program, reference = arch.qnn().program, gate_by_gate(arch)
    xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    expected = reference.expectation(xr, wr)
    rows = [torch.autograd.grad(expected[:, k].sum(), (xr, wr), retain_graph=True) for k in range(arch.n_qubits)]
    ref_dx = torch.stack([r[0] for r in rows], 1)  # (B, K, n_inputs): samples do not mix
    ref_dw_total = torch.stack([r[1] for r in rows], 0)  # (K, n_weights), summed over the batch
    out, dx, dw = program.jacobians(x, w)
    assert torch.allclose(out, expected.detach(), atol=1e-10, rtol=0)
    assert torch.allclose(dx, ref_dx, atol=1e-8, rtol=0)
    assert torch.allclose(dw.sum(0), ref_dw_total, atol=1e-8, rtol=0)
    g = torch.tensor(np.random.default_rng(arch.n_qubits).normal(size=(len(x), arch.n_qubits)))
    _, dx_v, dw_v = program.vjp(x, w, g)
    assert torch.allclose(dx_v, torch.einsum("bk,bki->bi", g, ref_dx), atol=1e-8, rtol=0)
    xr.grad = wr.grad = None
    (reference.expectation(xr, wr) * g).sum().backward()
    assert torch.allclose(dw_v.sum(0), wr.grad, atol=1e-8, rtol=0)
    # autograd through the closed form (state / expectation, as the SuperCircuit uses them)
    xf, wf = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    (program.expectation(xf, wf) * g).sum().backward()
    assert torch.allclose(xf.grad, xr.grad, atol=1e-8, rtol=0)
    assert torch.allclose(wf.grad, wr.grad, atol=1e-8, rtol=0)


#: parameter shift binds the tree's long angle expressions twice per parameter: the smaller circuits
@pytest.mark.parametrize("arch", [a for a in TREE_ARCHS if a.n_inputs + a.n_weights <= 24], ids=lambda a: a.key)
def test_tree_preparation_gradients_equal_estimator_qnn(arch):
    x, w = tree_inputs(arch, seed=arch.n_qubits + 40)
    ours = arch.qnn(input_gradients=True)
    reference = arch.qnn(engine="estimator", input_gradients=True)
    assert np.allclose(ours.forward(x, w), reference.forward(x, w), atol=1e-10, rtol=0)
    for a, b in zip(ours.backward(x, w), reference.backward(x, w)):
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-8, rtol=0)


@pytest.mark.parametrize("arch", [TREE_ARCHS[2], TREE_ARCHS[4], TREE_ARCHS[8]], ids=lambda a: a.key)
def test_tree_preparation_trains_through_torch_connector_like_the_gate_by_gate_engine(arch):
    """Features (negative entries, a zero block, a tiny vector) -> amplitude_angles -> the quantum layer
    in StatevectorConnector (vector-Jacobian products) and in plain TorchConnector (per-sample
    Jacobians): values, feature gradients and weight gradients equal those through TorchConnector over
    the gate-by-gate engine."""
    built = build_circuit(arch)
    x, w = tree_inputs(arch, seed=arch.n_qubits + 60)
    rng = np.random.default_rng(arch.n_qubits + 61)
    features = rng.normal(size=(4, arch.n_features))
    features[1, ::2] = 0.0
    features[2] *= 1e-9
    gate_qnn = StatevectorQNN(built.circuit, built.inputs, built.weights, z_observables(arch.n_qubits),
                              input_gradients=True)
    assert gate_qnn.program._tree_inputs is None
    layers = [StatevectorConnector(arch.qnn(input_gradients=True), initial_weights=w),
              TorchConnector(arch.qnn(input_gradients=True), initial_weights=w),
              TorchConnector(gate_qnn, initial_weights=w)]
    g = torch.tensor(rng.normal(size=(4, arch.n_qubits)), dtype=torch.float)
    results = []
    for layer in layers:
        f = torch.tensor(features, requires_grad=True)
        out = layer(amplitude_angles(f))
        (out * g).sum().backward()
        results.append((out.detach().numpy(), f.grad.numpy(), layer.weight.grad.numpy()))
    for ours in results[:2]:
        for a, b in zip(ours, results[2]):
            # TorchConnector returns float32 outputs and gradients (the tiny vector's are ~1e9)
            assert a.shape == b.shape and np.allclose(a, b, atol=1e-6, rtol=1e-5)
    assert np.all(np.isfinite(results[0][1]))


def test_tree_preparation_trains_the_hqnn_as_the_gate_by_gate_engine_does():
    arch = Architecture(3, 2, "amplitude", "rxry", ("odd", "all"))
    built = build_circuit(arch)
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
    fast = HQNN(arch, 6, 3, hidden=8, seed=2)
    slow = HQNN(arch, 6, 3, hidden=8, seed=2,
                qnn=StatevectorQNN(built.circuit, built.inputs, built.weights, z_observables(arch.n_qubits),
                                   input_gradients=True))
    assert fast.quantum.neural_network.program._tree_inputs is not None
    losses = [train_model(model, X, y, epochs=3, batch_size=8, seed=1) for model in (fast, slow)]
    assert np.allclose(losses[0], losses[1], rtol=1e-5)
    assert np.allclose(fast.quantum.weight.detach().numpy(), slow.quantum.weight.detach().numpy(), atol=1e-5)


def test_invalid_tree_preparations_are_rejected():
    arch = Architecture(3, 1, "amplitude", "ry", "chain")
    built = build_circuit(arch)
    good = built.preparation
    cases = [
        ("not a preparation", "preparation="),
        (RYTreePreparation(len(built.circuit.data) + 1, good.node_inputs), "n_instructions"),
        (RYTreePreparation(-1, good.node_inputs), "n_instructions"),
        (RYTreePreparation(good.n_instructions, good.node_inputs[:-1]), "node_inputs"),
        (RYTreePreparation(good.n_instructions, (0, 1, 2, 3, 4, 5, 7)), "node_inputs"),
        # declares only 6 of the 7 tree inputs: the tree's gates also read x[6]
        (RYTreePreparation(good.n_instructions, (0, 1, 2, 3, 4, 5, 5)), "x\\[6\\]"),
        # covers the first rotation layer too, whose weights are no node inputs
        (RYTreePreparation(good.n_instructions + 1, good.node_inputs), "w\\[0\\]"),
    ]
    for preparation, message in cases:
        with pytest.raises(ValueError, match=message):
            StatevectorProgram(built.circuit, built.inputs, built.weights, preparation=preparation)
