"""Execution engines: the exact torch statevector engine and Qiskit primitives."""

from __future__ import annotations

from collections.abc import Sequence

from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from .qnn import StatevectorConnector, StatevectorQNN, estimator_qnn
from .statevector import RYTreePreparation, StatevectorProgram

ENGINES = ("statevector", "estimator")


def circuit_qnn(circuit: QuantumCircuit, inputs: Sequence[Parameter], weights: Sequence[Parameter],
                observables: Sequence[SparsePauliOp], engine: str = "statevector", estimator=None,
                input_gradients: bool = False, preparation: RYTreePreparation | None = None, **kwargs):
    """``circuit`` as a qiskit-machine-learning ``NeuralNetwork`` on ``engine``, one output per observable.

    ``preparation`` declares a state-preparation block to the statevector engine; the estimator
    engine runs the circuit's gates as they are.
    """
    if engine == "statevector":
        if estimator is not None:
            raise ValueError("engine='statevector' takes no estimator; use engine='estimator'")
        return StatevectorQNN(circuit, inputs, weights, observables,
                              input_gradients=input_gradients, preparation=preparation, **kwargs)
    if engine == "estimator":
        return estimator_qnn(circuit, inputs, weights, observables, estimator=estimator,
                             input_gradients=input_gradients, **kwargs)
    raise ValueError(f"invalid engine={engine!r}; allowed: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "RYTreePreparation", "StatevectorConnector", "StatevectorProgram", "StatevectorQNN",
           "circuit_qnn", "estimator_qnn"]
