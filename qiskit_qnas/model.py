"""The hybrid quantum-classical network (HQNN): classical pre-layer, quantum layer, classical head."""

from __future__ import annotations

import math

import numpy as np
import torch
from qiskit_machine_learning.connectors import TorchConnector
from torch import nn

from .circuits import amplitude_angles
from .space import Architecture


def feature_transform(arch: Architecture, features: torch.Tensor) -> torch.Tensor:
    """Turn the pre-layer's outputs into the circuit's inputs.

    Angle and zz embeddings take ``pi * tanh(f)`` (a rotation angle in (-pi, pi)); the amplitude
    embedding takes the RY-tree angles that prepare ``f / ||f||``.
    """
    if arch.embedding == "amplitude":
        return amplitude_angles(features)
    return math.pi * torch.tanh(features)


def classical_pre_layer(n_features: int, n_outputs: int, hidden: int, dropout: float) -> nn.Module:
    """The paper's pre-layer: Linear -> hidden, ReLU, dropout, Linear -> what the embedding needs
    (``hidden=0``: a single Linear)."""
    if hidden <= 0:
        return nn.Linear(n_features, n_outputs)
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_outputs))


class HQNN(nn.Module):
    """Pre-layer -> quantum layer (a qiskit-machine-learning ``NeuralNetwork`` inside ``TorchConnector``)
    -> Linear head from the ``<Z_i>`` of every qubit to the class logits.

    Args:
        arch: the quantum layer's architecture.
        n_features: input width; n_classes: number of logits.
        hidden, dropout: pre-layer width (0 for none) and dropout.
        engine, estimator: which QNN runs the circuit (see :meth:`Architecture.qnn`).
        seed: seeds the initial weights (classical and quantum).
    """

    def __init__(self, arch: Architecture, n_features: int, n_classes: int, hidden: int = 64, dropout: float = 0.1,
                 engine: str = "statevector", estimator=None, seed: int | None = None, qnn=None):
        super().__init__()
        for name, value, low in (("n_features", n_features, 1), ("n_classes", n_classes, 2), ("hidden", hidden, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"invalid {name}={value!r}; allowed: an integer >= {low}")
        self.arch = arch
        self.n_features, self.n_classes = int(n_features), int(n_classes)
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            self.pre = classical_pre_layer(self.n_features, arch.n_features, hidden, dropout)
            self.head = nn.Linear(arch.n_qubits, self.n_classes)
        if qnn is None:
            qnn = arch.qnn(engine=engine, estimator=estimator, input_gradients=True)
        qnn.input_gradients = True
        initial = torch.empty(arch.n_weights, dtype=torch.float64).uniform_(-math.pi, math.pi, generator=generator)
        self.quantum = TorchConnector(qnn, initial_weights=initial.numpy())

    def circuit_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The quantum layer's inputs (circuit parameters ``x``) for a batch of raw features."""
        return feature_transform(self.arch, self.pre(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.quantum(self.circuit_inputs(x)).to(x.dtype))


def train_model(model: nn.Module, X, y, epochs: int = 30, batch_size: int = 32, lr: float = 0.02,
                seed: int | None = 0, weight_decay: float = 0.0, progress=None) -> list[float]:
    """Mini-batch Adam on cross-entropy; returns the mean loss of every epoch.

    ``progress`` (optional) is called with (epoch, loss) after every epoch.
    """
    X = torch.as_tensor(np.asarray(X, dtype=np.float32))
    y = torch.as_tensor(np.asarray(y, dtype=np.int64))
    if len(X) != len(y) or len(X) == 0:
        raise ValueError(f"X and y must be non-empty and of equal length, got {len(X)} and {len(y)}")
    generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    model.train()
    for epoch in range(int(epochs)):
        order = torch.randperm(len(X), generator=generator)
        total = 0.0
        for start in range(0, len(X), batch_size):
            index = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(X[index]), y[index])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        losses.append(total / len(X))
        if progress is not None:
            progress(epoch, losses[-1])
    model.eval()
    return losses


@torch.no_grad()
def predict_logits(model: nn.Module, X, batch_size: int = 1024) -> np.ndarray:
    """Logits of ``model`` in evaluation mode, computed in batches."""
    model.eval()
    X = torch.as_tensor(np.asarray(X, dtype=np.float32))
    return np.concatenate([model(X[i:i + batch_size]).numpy() for i in range(0, len(X), batch_size)] or
                          [np.zeros((0, getattr(model, "n_classes", 0)))])
