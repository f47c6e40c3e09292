"""Quantum layers as qiskit-machine-learning ``NeuralNetwork``s, so that ``TorchConnector`` plugs them in."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.neural_networks import EstimatorQNN, NeuralNetwork

from .statevector import RYTreePreparation, StatevectorProgram, torch_threads_for


class StatevectorQNN(NeuralNetwork):
    """Exact expectation values ``<O_k>`` of a circuit, simulated by :class:`StatevectorProgram`.

    A drop-in for ``EstimatorQNN`` over ``StatevectorEstimator`` (same values, exact gradients by the
    adjoint method instead of parameter shifts), orders of magnitude faster: see
    ``benchmarks/results/engine_throughput.md``. ``preparation`` (an :class:`RYTreePreparation`, as
    :func:`~qiskit_qnas.circuits.build_circuit` declares for the amplitude embedding) lets the
    engine start from the closed-form state of the circuit's leading RY tree.
    """

    #: batches of at most this many amplitudes keep their final state for the next backward
    TRACE_FORWARD_BELOW = 2**22

    def __init__(self, circuit: QuantumCircuit, input_params: Sequence[Parameter],
                 weight_params: Sequence[Parameter], observables: Sequence[SparsePauliOp] | None = None,
                 input_gradients: bool = False, preparation: RYTreePreparation | None = None):
        self.circuit = circuit
        self.input_params = list(input_params)
        self.weight_params = list(weight_params)
        # (inputs bytes, weights bytes, final state) of the last forward pass, for its backward
        self._last: tuple[bytes, bytes, torch.Tensor] | None = None
        self.program = StatevectorProgram(circuit, self.input_params, self.weight_params, observables,
                                          preparation=preparation)
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
        with torch_threads_for(len(x) * self.program.dim * self.program.n_outputs):
            _, dx, dw = self.program.jacobians(x, w, self.input_gradients, final_state=self._final_state(x, w))
        return (None if dx is None else dx.numpy()), dw.numpy()

    def vector_jacobian(self, input_data, weights, grad_outputs) -> tuple[np.ndarray | None, np.ndarray]:
        """``grad_outputs`` (B, K) contracted with the Jacobians of a batch: sum_k g_bk d<O_k>_b/dx as
        (B, num_inputs) (None without input gradients) and sum_b,k g_bk d<O_k>_b/dw as (num_weights,).

        Equal to contracting :meth:`backward`'s Jacobians (what ``TorchConnector`` does), at the cost of
        one cotangent state per sample instead of K (see :meth:`StatevectorProgram.vjp`).
        """
        input_, _ = self._validate_input(input_data)
        x, w = self._arrays(input_, self._validate_weights(weights))
        g = np.asarray(grad_outputs, dtype=float).reshape(len(x), self.program.n_outputs)
        with torch_threads_for(2 * len(x) * self.program.dim):
            _, dx, dw = self.program.vjp(x, w, g, self.input_gradients, final_state=self._final_state(x, w))
        return (None if dx is None else dx.numpy()), dw.sum(0).numpy()

    def _final_state(self, x: np.ndarray, w: np.ndarray):
        """The final states the last forward kept, if it ran on this ``x`` and ``w`` (used once)."""
        last, self._last = self._last, None
        return last[2] if last is not None and last[:2] == (x.tobytes(), w.tobytes()) else None

    def _arrays(self, input_data, weights) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((1, 0)) if input_data is None else input_data
        w = np.zeros(0) if weights is None else weights
        return x, w


class _VectorJacobianFunction(torch.autograd.Function):
    """``TorchConnector``'s autograd function for a :class:`StatevectorQNN`: same forward, and a
    backward that asks for the vector-Jacobian product instead of per-sample Jacobians."""

    @staticmethod
    def forward(ctx, input_data, weights, qnn: StatevectorQNN):
        ctx.qnn, ctx.input_shape = qnn, input_data.shape
        ctx.save_for_backward(input_data, weights)
        result = torch.as_tensor(qnn.forward(input_data.detach().cpu().numpy(), weights.detach().cpu().numpy()),
                                 dtype=torch.float)
        return (result[0] if input_data.dim() == 1 else result).to(input_data.device)

    @staticmethod
    def backward(ctx, grad_output):
        input_data, weights = ctx.saved_tensors
        dx, dw = ctx.qnn.vector_jacobian(input_data.detach().cpu().numpy(), weights.detach().cpu().numpy(),
                                         grad_output.detach().cpu().numpy())
        if dx is not None:
            dx = torch.as_tensor(dx, dtype=torch.float).reshape(ctx.input_shape).to(input_data.device)
        return dx, torch.as_tensor(dw, dtype=torch.float).to(weights.device), None


class StatevectorConnector(TorchConnector):
    """``TorchConnector`` that trains a :class:`StatevectorQNN` by vector-Jacobian products.

    ``TorchConnector`` asks a ``NeuralNetwork`` for the per-sample Jacobians of all K outputs and
    contracts them with the incoming gradient; the statevector engine can take that gradient into its
    adjoint sweep instead (one cotangent state per sample, not K), which makes a training step of a
    10-qubit layer several times faster. Values and gradients are those of ``TorchConnector`` (tested);
    any other network (``EstimatorQNN``, sparse output) goes through ``TorchConnector`` unchanged.
    """

    def forward(self, input_data=None):
        qnn = self.neural_network
        if not isinstance(qnn, StatevectorQNN) or self.sparse or input_data is None:
            return super().forward(input_data)
        return _VectorJacobianFunction.apply(input_data, self.weight, qnn)


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
