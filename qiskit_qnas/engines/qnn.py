"""Quantum layers as qiskit-machine-learning ``NeuralNetwork``s, so that ``TorchConnector`` plugs them in."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.neural_networks import EstimatorQNN, NeuralNetwork

from .statevector import StatevectorProgram, torch_threads_for


class StatevectorQNN(NeuralNetwork):
    """Exact expectation values ``<O_k>`` of a circuit, simulated by :class:`StatevectorProgram`.

    A drop-in for ``EstimatorQNN`` over ``StatevectorEstimator`` (same values, exact gradients by the
    adjoint method instead of parameter shifts), orders of magnitude faster: see
    ``benchmarks/results/engine_throughput.md``.
    """

    #: batches of at most this many amplitudes keep their final state for the next backward
    TRACE_FORWARD_BELOW = 2**22

    def __init__(self, circuit: QuantumCircuit, input_params: Sequence[Parameter],
                 weight_params: Sequence[Parameter], observables: Sequence[SparsePauliOp] | None = None,
                 input_gradients: bool = False):
        self.circuit = circuit
        self.input_params = list(input_params)
        self.weight_params = list(weight_params)
        self._last = None
        self.program = StatevectorProgram(circuit, self.input_params, self.weight_params, observables)
        super().__init__(num_inputs=len(self.input_params), num_weights=len(self.weight_params),
                         sparse=False, output_shape=self.program.n_outputs, input_gradients=input_gradients)

    def _forward(self, input_data: np.ndarray | None, weights: np.ndarray | None) -> np.ndarray:
        x, w = self._arrays(input_data, weights)
        with torch_threads_for(len(x) * self.program.dim):
            outputs, psi = self.program.run(x, w)
        # TorchConnector calls backward on the same data right after forward: keep the final state
        # so that backward only runs the adjoint sweep
        self._last = (x.tobytes(), w.tobytes(), psi) if psi.numel() <= self.TRACE_FORWARD_BELOW else None
        return outputs.numpy()

    def _backward(self, input_data: np.ndarray | None, weights: np.ndarray | None):
        x, w = self._arrays(input_data, weights)
        last, self._last = self._last, None
        final = last[2] if last is not None and last[:2] == (x.tobytes(), w.tobytes()) else None
        with torch_threads_for(len(x) * self.program.dim * self.program.n_outputs):
            _, dx, dw = self.program.jacobians(x, w, self.input_gradients, final_state=final)
        return (None if dx is None else dx.numpy()), dw.numpy()

    def _arrays(self, input_data, weights) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((1, 0)) if input_data is None else input_data
        w = np.zeros(0) if weights is None else weights
        return x, w


def estimator_qnn(circuit: QuantumCircuit, input_params, weight_params, observables, estimator=None,
                  input_gradients: bool = False, default_precision: float = 0.0) -> EstimatorQNN:
    """Plain ``EstimatorQNN`` over a ``BaseEstimatorV2`` (default ``StatevectorEstimator``).

    ``default_precision=0`` because ``EstimatorQNN`` otherwise asks every call for precision 1/64,
    which makes exact estimators add Gaussian noise.
    """
    from qiskit.primitives import StatevectorEstimator

    return EstimatorQNN(circuit=circuit, observables=list(observables), input_params=list(input_params),
                        weight_params=list(weight_params), estimator=estimator or StatevectorEstimator(),
                        input_gradients=input_gradients, default_precision=default_precision)
