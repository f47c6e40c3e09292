"""``StatevectorQNN`` beyond the search's own circuits, cross-checked against qiskit-machine-learning's
``EstimatorQNN`` over Qiskit's ``StatevectorEstimator`` in values and gradients:

* observables with X and Y terms (sums of Pauli strings, shared terms, coefficients), and a training
  step through ``StatevectorConnector`` equal to ``TorchConnector``'s;
* gates the engine has no kernel for, run through their definitions (once per circuit); a gate with no
  definition is refused with its name.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.circuit import Gate, ParameterVector, QuantumCircuit
from qiskit.circuit.library import CUGate, MCXGate, RGate, U2Gate, XXPlusYYGate
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.connectors import TorchConnector

from qiskit_qnas.circuits import z_observables
from qiskit_qnas.engines import StatevectorConnector
from qiskit_qnas.engines.qnn import PauliMeasurements, StatevectorQNN, estimator_qnn
from qiskit_qnas.engines.statevector.program import has_kernel


def assert_agree(ours, reference, inputs, weights) -> None:
    """Values and input / weight Jacobians of two QNNs equal to 1e-10."""
    np.testing.assert_allclose(ours.forward(inputs, weights), reference.forward(inputs, weights), atol=1e-10)
    (dx, dw), (rdx, rdw) = ours.backward(inputs, weights), reference.backward(inputs, weights)
    np.testing.assert_allclose(dx, rdx, atol=1e-10)
    np.testing.assert_allclose(dw, rdw, atol=1e-10)


OBSERVABLES = [SparsePauliOp("XXI"), SparsePauliOp(["ZYZ", "XXI"], [0.5, -1.5]), SparsePauliOp("IIZ"),
               SparsePauliOp(["YII", "IXY", "ZZZ"], [0.3, 0.7, -0.2])]


def layer() -> tuple[QuantumCircuit, ParameterVector, ParameterVector]:
    x, w = ParameterVector("x", 3), ParameterVector("w", 9)
    qc = QuantumCircuit(3)
    for q in range(3):
        qc.ry(x[q], q)
    for layer_index in range(3):
        for q in range(3):
            qc.rx(w[3 * layer_index + q], q) if layer_index % 2 else qc.ry(w[3 * layer_index + q], q)
        qc.cx(0, 1)
        qc.cx(1, 2)
        qc.rz(w[3 * layer_index] * 0.5, 2)
    return qc, x, w


def both(observables, input_gradients=True):
    qc, x, w = layer()
    ours = StatevectorQNN(qc, list(x), list(w), observables, input_gradients=input_gradients)
    reference = estimator_qnn(qc, list(x), list(w), observables, input_gradients=input_gradients)
    return ours, reference


def test_values_and_gradients_of_x_and_y_observables_equal_estimator_qnn():
    ours, reference = both(OBSERVABLES)
    rng = np.random.default_rng(0)
    inputs, weights = rng.uniform(-np.pi, np.pi, (5, 3)), rng.uniform(-np.pi, np.pi, 9)
    assert_agree(ours, reference, inputs, weights)
    assert ours.measurements is not None and len(ours.programs) == len(ours.measurements.groups) >= 2
    ours, reference = both(OBSERVABLES, input_gradients=False)
    (dx, dw), (rdx, rdw) = ours.backward(inputs, weights), reference.backward(inputs, weights)
    assert dx is None and rdx is None
    np.testing.assert_allclose(dw, rdw, atol=1e-10)
    g = rng.normal(size=(5, len(OBSERVABLES)))
    _, vjp_w = ours.vector_jacobian(inputs, weights, g)
    np.testing.assert_allclose(vjp_w, np.einsum("bk,bkn->n", g, rdw), atol=1e-10)


def test_a_training_step_through_the_connector_equals_torch_connector_s():
    ours, reference = both(OBSERVABLES)
    rng = np.random.default_rng(1)
    inputs = torch.tensor(rng.uniform(-np.pi, np.pi, (4, 3)), dtype=torch.float, requires_grad=True)
    initial = rng.uniform(-1, 1, 9).astype(np.float32)
    gradients = []
    for connector in (StatevectorConnector(ours, initial_weights=initial), TorchConnector(reference,
                                                                                          initial_weights=initial)):
        x = inputs.detach().clone().requires_grad_(True)
        loss = (connector(x) * torch.tensor([1.0, -2.0, 0.5, 3.0])).sum()
        loss.backward()
        gradients.append((loss.item(), x.grad.numpy(), connector.weight.grad.numpy()))
    (loss, dx, dw), (rloss, rdx, rdw) = gradients
    assert loss == pytest.approx(rloss, abs=1e-5)
    np.testing.assert_allclose(dx, rdx, atol=1e-5)
    np.testing.assert_allclose(dw, rdw, atol=1e-5)


def test_terms_are_grouped_qubit_wise_and_shared_terms_simulated_once():
    measurements = PauliMeasurements.of(OBSERVABLES, 3)
    labels = [term.paulis[0].to_label() for _, terms in measurements.groups for term in terms]
    assert len(labels) == 6 and all(set(label) <= {"I", "Z"} for label in labels)  # XXI once, diagonalised
    np.testing.assert_allclose(measurements.mixing.sum(0), [1.0, -1.0, 1.0, 0.8])
    for basis, _ in measurements.groups:
        assert set(basis.values()) <= {"X", "Y"}


def test_a_non_hermitian_or_mis_sized_observable_is_refused():
    qc, x, w = layer()
    with pytest.raises(ValueError, match="not Hermitian"):
        StatevectorQNN(qc, list(x), list(w), [SparsePauliOp("XYZ", 1j)])
    with pytest.raises(ValueError, match="acts on 2 qubits"):
        StatevectorQNN(qc, list(x), list(w), [SparsePauliOp("XY")])


# --- gates without a kernel ------------------------------------------------------------------------
def library_circuit() -> tuple[QuantumCircuit, ParameterVector, ParameterVector]:
    x, w = ParameterVector("x", 3), ParameterVector("w", 8)
    qc = QuantumCircuit(3)
    for q in range(3):
        qc.ry(x[q], q)
    qc.rxx(w[0], 0, 1)
    qc.ryy(0.5 * w[1] + x[0], 1, 2)
    qc.rzx(w[2], 0, 2)
    qc.append(XXPlusYYGate(w[3], w[4]), [0, 1])
    qc.append(RGate(w[5], x[1]), [2])
    qc.append(U2Gate(w[6], 0.3), [1])
    qc.append(CUGate(w[7], 0.2, x[2], 0.1), [2, 0])
    qc.ecr(0, 1)
    qc.iswap(1, 2)
    qc.cswap(0, 1, 2)
    qc.rccx(0, 1, 2)
    qc.append(MCXGate(2), [1, 2, 0])
    qc.csx(2, 1)
    qc.dcx(0, 2)
    return qc, x, w


def test_standard_library_gates_equal_estimator_qnn_in_values_and_gradients():
    qc, x, w = library_circuit()
    missing = {i.operation.name for i in qc.data
               if not has_kernel(i.operation.name, len(i.qubits), bool(i.operation.params))}
    assert {"rxx", "ryy", "rzx", "xx_plus_yy", "ecr", "iswap", "cswap", "rccx"} <= missing
    observables = [*z_observables(3), SparsePauliOp(["XYZ", "IXX"], [0.4, -0.9])]
    ours = StatevectorQNN(qc, list(x), list(w), observables, input_gradients=True)
    reference = estimator_qnn(qc, list(x), list(w), observables, input_gradients=True)
    rng = np.random.default_rng(0)
    inputs, weights = rng.uniform(-np.pi, np.pi, (4, 3)), rng.uniform(-np.pi, np.pi, 8)
    assert_agree(ours, reference, inputs, weights)


def test_a_gate_without_a_definition_is_refused_by_name():
    qc = QuantumCircuit(2)
    qc.append(Gate("mystery", 2, []), [0, 1])
    with pytest.raises(NotImplementedError, match="mystery"):
        StatevectorQNN(qc, [], [])


# --- qiskit-machine-learning's own TorchConnector cases ------------------------------------------
# From qiskit-machine-learning's test/connectors/test_torch_connector.py (test_estimator_qnn and the
# validators it calls: _validate_forward, _validate_backward, _validate_backward_automatically), with
# StatevectorQNN in place of EstimatorQNN: z_feature_map + real_amplitudes (reps=1) on 1 and 2 qubits.
TORCH_CONNECTOR_CASES = [
    (1, None), (1, SparsePauliOp.from_list([("Z", 1)])), (2, None), (2, SparsePauliOp.from_list([("ZZ", 1)])),
    (2, [SparsePauliOp.from_list([("ZI", 1)]), SparsePauliOp.from_list([("IZ", 1)])]),
]


@pytest.mark.parametrize(("num_qubits", "observables"), TORCH_CONNECTOR_CASES)
def test_qiskit_machine_learning_torch_connector_cases_pass_with_statevector_qnn(num_qubits, observables):
    from qiskit.circuit.library import real_amplitudes, z_feature_map
    from qiskit_machine_learning.connectors.torch_connector import _TorchNNFunction
    from qiskit_machine_learning.exceptions import QiskitMachineLearningError

    fmap, ansatz = z_feature_map(num_qubits, reps=1), real_amplitudes(num_qubits, reps=1)
    qc = QuantumCircuit(num_qubits)
    qc.compose(fmap, inplace=True)
    qc.compose(ansatz, inplace=True)
    observables = [observables] if isinstance(observables, SparsePauliOp) else observables
    qnn = StatevectorQNN(qc, list(fmap.parameters), list(ansatz.parameters), observables, input_gradients=True)
    reference = estimator_qnn(qc, list(fmap.parameters), list(ansatz.parameters), observables, input_gradients=True)
    assert qnn.output_shape == reference.output_shape  # observables=None: EstimatorQNN's Z...Z
    torch.manual_seed(0)
    for model in (TorchConnector(qnn), StatevectorConnector(qnn)):
        weights = model.weight.detach().numpy()
        for batch_size in (1, 2):  # _validate_forward
            input_data = torch.rand((batch_size, qnn.num_inputs))
            np.testing.assert_almost_equal(model(input_data).detach().numpy(),
                                           qnn.forward(input_data.numpy(), weights))
        with pytest.raises(QiskitMachineLearningError):
            model(torch.rand((1, qnn.num_inputs + 1)))
        for batch_size in (1, 2):  # _validate_backward
            input_data = torch.rand((batch_size, qnn.num_inputs))
            model.zero_grad()
            torch.sum(model(input_data)).backward()
            _, qnn_backward = qnn.backward(input_data.numpy(), weights)
            eps, finite = 1e-4, np.zeros((batch_size, *qnn.output_shape, qnn.num_weights))
            for k in range(qnn.num_weights):
                delta = np.zeros_like(weights)
                delta[k] = eps
                finite[:, :, k] = (qnn.forward(input_data.numpy(), weights + delta)
                                   - qnn.forward(input_data.numpy(), weights - delta)) / (2 * eps)
            np.testing.assert_almost_equal(finite, qnn_backward, decimal=4)
            np.testing.assert_almost_equal(model.weight.grad.numpy(), qnn_backward.sum(axis=(0, 1)), decimal=6)
        # _validate_backward_automatically
        data = (torch.randn(qnn.num_inputs, dtype=torch.double, requires_grad=True),
                torch.randn(qnn.num_weights, dtype=torch.double, requires_grad=True))
        assert torch.autograd.gradcheck(_TorchNNFunction.apply, (*data, qnn, False), eps=1e-4, atol=1e-3)
    # and the values and gradients are EstimatorQNN's (StatevectorEstimator, no shot noise)
    rng = np.random.default_rng(0)
    assert_agree(qnn, reference, rng.uniform(-np.pi, np.pi, (3, qnn.num_inputs)),
                 rng.uniform(-np.pi, np.pi, qnn.num_weights))
