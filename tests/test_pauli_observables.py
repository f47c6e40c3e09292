"""``StatevectorQNN`` with observables that have X and Y terms (sums of Pauli strings, shared terms,
coefficients): values and gradients equal to qiskit-machine-learning's ``EstimatorQNN`` over Qiskit's
``StatevectorEstimator``, and a training step through ``StatevectorConnector`` equal to ``TorchConnector``'s."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.connectors import TorchConnector

from qiskit_qnas.engines import StatevectorConnector
from qiskit_qnas.engines.qnn import PauliMeasurements, StatevectorQNN, estimator_qnn

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
    np.testing.assert_allclose(ours.forward(inputs, weights), reference.forward(inputs, weights), atol=1e-10)
    (dx, dw), (rdx, rdw) = ours.backward(inputs, weights), reference.backward(inputs, weights)
    np.testing.assert_allclose(dx, rdx, atol=1e-10)
    np.testing.assert_allclose(dw, rdw, atol=1e-10)
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
