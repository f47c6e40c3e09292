"""Single source of the qiskit-qnas version."""

__version__ = "0.1.0"
