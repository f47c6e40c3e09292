"""Quantum layers as qiskit-machine-learning ``NeuralNetwork``s, so that ``TorchConnector`` plugs them in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.neural_networks import EstimatorQNN, NeuralNetwork

from .statevector import RYTreePreparation, StatevectorProgram, torch_threads_for


@dataclass(frozen=True)
class PauliMeasurements:
    """Observables with X and Y terms, measured as the hardware does: their Pauli terms in qubit-wise
    commuting groups, each group's circuit followed by its basis change (``h`` for X, ``sdg`` then ``h``
    for Y) so that every term is diagonal (a Z string), and the observables' values ``terms @ mixing``.

    ``groups``: per group, the basis change ``{qubit: "X" | "Y"}`` and its diagonal terms; the terms of
    all groups, in order, are the rows of ``mixing`` (terms x observables: each term's coefficient in
    each observable; a term shared by observables is simulated once).
    """

    groups: tuple[tuple[dict[int, str], tuple[SparsePauliOp, ...]], ...]
    mixing: np.ndarray

    @classmethod
    def of(cls, observables: Sequence[SparsePauliOp], n_qubits: int) -> PauliMeasurements:
        coefficients: dict[str, dict[int, float]] = {}  # Pauli label -> {observable: coefficient}
        for k, observable in enumerate(observables):
            observable = SparsePauliOp(observable).simplify(atol=0)
            if observable.num_qubits != n_qubits:
                raise ValueError(f"observable {k} acts on {observable.num_qubits} qubits, the circuit has {n_qubits}")
            for pauli, coeff in zip(observable.paulis, observable.coeffs):
                if abs(coeff.imag) > 1e-12:
                    raise ValueError(f"observable {k} is not Hermitian (coefficient {coeff} of {pauli})")
                # simplify() merged each label's terms and moved any phase into the coefficient
                coefficients.setdefault(pauli.to_label(), {})[k] = coeff.real
        groups: list[tuple[dict[int, str], list[str]]] = []
        for label in coefficients:
            letters = {q: letter for q, letter in enumerate(reversed(label)) if letter != "I"}
            for basis, members in groups:  # qubit-wise commuting: the same letter wherever both act
                if all(basis.get(q, letter) == letter for q, letter in letters.items()):
                    basis.update(letters)
                    members.append(label)
                    break
            else:
                groups.append((dict(letters), [label]))
        ordered = [label for _, members in groups for label in members]
        mixing = np.zeros((len(ordered), len(observables)))
        for row, label in enumerate(ordered):
            for k, coeff in coefficients[label].items():
                mixing[row, k] = coeff
        diagonal = [({q: b for q, b in basis.items() if b != "Z"},
                     tuple(SparsePauliOp(label.replace("X", "Z").replace("Y", "Z")) for label in members))
                    for basis, members in groups]
        return cls(groups=tuple(diagonal), mixing=mixing)

    @staticmethod
    def measured_in(circuit: QuantumCircuit, basis: dict[int, str]) -> QuantumCircuit:
        """``circuit`` followed by the change of basis that makes X or Y on each qubit of ``basis`` a Z."""
        measured = circuit.copy()
        for qubit, letter in sorted(basis.items()):
            if letter == "Y":
                measured.sdg(qubit)
            measured.h(qubit)
        return measured


class StatevectorQNN(NeuralNetwork):
    """Exact expectation values ``<O_k>`` of a circuit, simulated by :class:`StatevectorProgram`.

    A drop-in for ``EstimatorQNN`` over ``StatevectorEstimator`` (same values, exact gradients by the
    adjoint method instead of parameter shifts), orders of magnitude faster: see
    ``benchmarks/results/engine_throughput.md``. ``preparation`` (an :class:`RYTreePreparation`, as
    :func:`~qiskit_qnas.circuits.build_circuit` declares for the amplitude embedding) lets the
    engine start from the closed-form state of the circuit's leading RY tree. ``observables`` may be any
    Hermitian ``SparsePauliOp``s: diagonal ones (I/Z) are read from one simulation;
    X and Y terms are measured by group after a change of basis (:class:`PauliMeasurements`), one
    simulation per qubit-wise commuting group. ``observables=None`` is ``EstimatorQNN``'s default: the
    one observable ``Z`` on every qubit (``Z...Z``).
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
        if observables is None:  # as EstimatorQNN: the parity of all qubits
            observables = [SparsePauliOp("Z" * circuit.num_qubits)]
        #: observables with X or Y terms, measured group by group (None: all diagonal, one program)
        self.measurements: PauliMeasurements | None = None
        if any(np.any(SparsePauliOp(o).paulis.x) for o in observables):
            self.measurements = PauliMeasurements.of(list(observables), circuit.num_qubits)
            self._mixing = torch.as_tensor(self.measurements.mixing)
            self.programs = [StatevectorProgram(PauliMeasurements.measured_in(circuit, basis), self.input_params,
                                                self.weight_params, list(terms), preparation=preparation)
                             for basis, terms in self.measurements.groups]
            n_outputs = len(observables)
        else:
            self.program = StatevectorProgram(circuit, self.input_params, self.weight_params, observables,
                                              preparation=preparation)
            self.programs = [self.program]
            n_outputs = self.program.n_outputs
        super().__init__(num_inputs=len(self.input_params), num_weights=len(self.weight_params),
                         sparse=False, output_shape=n_outputs, input_gradients=input_gradients)

    def _term_slices(self) -> list[slice]:
        """The rows of the mixing matrix each group's program computes."""
        bounds = np.cumsum([0] + [p.n_outputs for p in self.programs])
        return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

    def _forward(self, input_data: np.ndarray | None, weights: np.ndarray | None) -> np.ndarray:
        x, w = self._arrays(input_data, weights)
        if self.measurements is not None:
            with torch_threads_for(len(x) * self.programs[0].dim):
                terms = torch.cat([program.run(x, w)[0] for program in self.programs], 1)
            return (terms @ self._mixing).numpy()
        with torch_threads_for(len(x) * self.program.dim):
            outputs, psi = self.program.run(x, w)
        # TorchConnector calls backward on the same data right after forward: keep the final state
        # so that backward only runs the adjoint sweep
        self._last = (x.tobytes(), w.tobytes(), psi) if psi.numel() <= self.TRACE_FORWARD_BELOW else None
        return outputs.numpy()

    def _backward(self, input_data: np.ndarray | None, weights: np.ndarray | None):
        x, w = self._arrays(input_data, weights)
        if self.measurements is not None:
            with torch_threads_for(len(x) * self.programs[0].dim * self.programs[0].n_outputs):
                parts = [program.jacobians(x, w, self.input_gradients) for program in self.programs]

            def observables_of(jacobians: list) -> np.ndarray:  # (B, terms, n) -> (B, observables, n)
                return torch.einsum("btn,tk->bkn", torch.cat(jacobians, 1), self._mixing).numpy()

            weight_jacobians = observables_of([part[2] for part in parts])
            return (observables_of([part[1] for part in parts]) if self.input_gradients else None), weight_jacobians
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
        g = np.asarray(grad_outputs, dtype=float).reshape(len(x), self.output_shape[0])
        if self.measurements is not None:  # the cotangent of the terms, then one vjp per group, summed
            g_terms = torch.as_tensor(g) @ self._mixing.T
            with torch_threads_for(2 * len(x) * self.programs[0].dim):
                parts = [program.vjp(x, w, g_terms[:, rows], self.input_gradients)
                         for program, rows in zip(self.programs, self._term_slices())]
            weight_products = torch.stack([part[2] for part in parts]).sum(0).sum(0).numpy()
            if not self.input_gradients:
                return None, weight_products
            input_products = torch.stack([part[1] for part in parts if part[1] is not None]).sum(0)
            return input_products.numpy(), weight_products
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

    return EstimatorQNN(circuit=circuit, observables=None if observables is None else list(observables),
                        input_params=list(input_params),
                        weight_params=list(weight_params), estimator=estimator or StatevectorEstimator(),
                        input_gradients=input_gradients, default_precision=default_precision)
