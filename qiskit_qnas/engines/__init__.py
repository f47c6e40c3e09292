"""Execution engines: the exact torch statevector engine and Qiskit primitives."""

from __future__ import annotations

from .qnn import StatevectorConnector, StatevectorQNN, estimator_qnn
from .statevector import RYTreePreparation, StatevectorProgram

ENGINES = ("statevector", "estimator")


def make_qnn(arch, engine: str = "statevector", estimator=None, input_gradients: bool = False, **kwargs):
    """The quantum layer of ``arch`` as a qiskit-machine-learning ``NeuralNetwork`` (outputs ``<Z_i>``)."""
    from ..circuits import build_circuit, z_observables

    built = build_circuit(arch)
    observables = z_observables(arch.n_qubits)
    if engine == "statevector":
        if estimator is not None:
            raise ValueError("engine='statevector' takes no estimator; use engine='estimator'")
        return StatevectorQNN(built.circuit, built.inputs, built.weights, observables,
                              input_gradients=input_gradients, preparation=built.preparation, **kwargs)
    if engine == "estimator":
        return estimator_qnn(built.circuit, built.inputs, built.weights, observables, estimator=estimator,
                             input_gradients=input_gradients, **kwargs)
    raise ValueError(f"invalid engine={engine!r}; allowed: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "RYTreePreparation", "StatevectorConnector", "StatevectorProgram", "StatevectorQNN",
           "estimator_qnn", "make_qnn"]
