"""Seconds per training epoch of the amplitude-embedded HQNN against the angle-embedded one.

Both are ``Architecture(8, 2, embedding, "ry", ("odd", "odd")).model(784, 10)`` (the default
pre-layer, the quantum layer through ``TorchConnector``), trained by ``train_model`` on random
784-feature data (``--samples``, default 6,000, ten classes) for ``--epochs`` epochs; the time of
building the model (circuit compilation included) is reported apart. The amplitude circuit
prepares ``f / ||f||`` with a tree of uniformly controlled RY rotations (255 RY, 494 CX); the engine
starts its sweep from that tree's closed-form state instead of simulating it gate by gate; the
row "amplitude, gate by gate" is the same model over a ``StatevectorQNN`` built without that
declaration (what the engine did before), timed in the same run.

    nice -n 10 python benchmarks/amplitude_epoch.py [--epochs 1] [--samples 6000] [--qubits 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np

from qiskit_qnas import Architecture
from qiskit_qnas.circuits import build_circuit, z_observables
from qiskit_qnas.engines import StatevectorQNN
from qiskit_qnas.model import train_model

N_FEATURES = 784
N_CLASSES = 10


def time_epochs(embedding: str, n_qubits: int, X: np.ndarray, y: np.ndarray, epochs: int,
                gate_by_gate: bool = False) -> tuple[float, float]:
    """(seconds to build the model, seconds per training epoch)."""
    start = time.perf_counter()
    arch = Architecture(n_qubits=n_qubits, n_layers=2, embedding=embedding, rotation="ry", entangler=("odd", "odd"))
    qnn = None
    if gate_by_gate:  # no RYTreePreparation: every gate of the tree is simulated
        built = build_circuit(arch)
        qnn = StatevectorQNN(built.circuit, built.inputs, built.weights, z_observables(n_qubits), input_gradients=True)
    model = arch.model(N_FEATURES, N_CLASSES, qnn=qnn)
    built = time.perf_counter()
    train_model(model, X, y, epochs=epochs)
    return built - start, (time.perf_counter() - built) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--qubits", type=int, default=8)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.samples, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, args.samples)
    print(f"load average before: {os.getloadavg()}")
    print("| embedding | build (s) | seconds per epoch |")
    print("|---|---:|---:|")
    for embedding, gate_by_gate in (("angle_y", False), ("amplitude", False), ("amplitude", True)):
        build, per_epoch = time_epochs(embedding, args.qubits, X, y, args.epochs, gate_by_gate)
        name = f"{embedding}, gate by gate" if gate_by_gate else embedding
        print(f"| {name} | {build:.2f} | {per_epoch:.2f} |", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
