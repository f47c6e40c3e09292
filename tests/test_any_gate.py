"""Gates the statevector engine has no kernel for run through their definitions (once per circuit):
a circuit of Qiskit standard-library gates, some driven by expressions of the inputs, equals
qiskit-machine-learning's ``EstimatorQNN`` over Qiskit's ``StatevectorEstimator`` in values and
gradients; a gate with no definition is refused with its name."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.circuit import Gate, ParameterVector, QuantumCircuit
from qiskit.circuit.library import CUGate, MCXGate, RGate, U2Gate, XXPlusYYGate
from qiskit.quantum_info import SparsePauliOp

from qiskit_qnas.circuits import z_observables
from qiskit_qnas.engines.qnn import StatevectorQNN, estimator_qnn
from qiskit_qnas.engines.statevector.program import has_kernel


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
    np.testing.assert_allclose(ours.forward(inputs, weights), reference.forward(inputs, weights), atol=1e-10)
    (dx, dw), (rdx, rdw) = ours.backward(inputs, weights), reference.backward(inputs, weights)
    np.testing.assert_allclose(dx, rdx, atol=1e-10)
    np.testing.assert_allclose(dw, rdw, atol=1e-10)


def test_a_gate_without_a_definition_is_refused_by_name():
    qc = QuantumCircuit(2)
    qc.append(Gate("mystery", 2, []), [0, 1])
    with pytest.raises(NotImplementedError, match="mystery"):
        StatevectorQNN(qc, [], [])
