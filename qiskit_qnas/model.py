"""The hybrid quantum-classical network (HQNN): classical pre-layer, quantum layer, classical head."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from .circuits import amplitude_angles, make_qnn
from .engines import StatevectorConnector
from .engines.statevector import torch_threads_for
from .spec import ArchitectureSpec
from .validation import InvalidArgument, check_int, is_integer


def feature_transform(arch: ArchitectureSpec, features: torch.Tensor) -> torch.Tensor:
    """Turn the (normalised, see :func:`embedding_norm`) pre-layer outputs into the circuit's inputs.

    * ``angle_x`` / ``angle_y`` / ``angle_z``: ``pi * tanh(f)``, a rotation angle in (-pi, pi);
    * ``zz``: ``pi - (pi / 2) * sigmoid(2 f)``, in (pi/2, pi). The pair angle of the zz map,
      ``2 (pi - x_i)(pi - x_j)``, is quadratic in the inputs: over (-pi, pi) it would span 79 rad
      with input derivatives up to 8 pi, a landscape no optimiser follows (MNIST 8 qubits, 2
      layers: 0.75 test accuracy, against 0.91 on this interval, where it spans (0, pi**2 / 2));
    * ``amplitude``: the RY-tree angles that prepare ``f / ||f||``.
    """
    if arch.embedding == "amplitude":
        return amplitude_angles(features)
    if arch.embedding == "zz":
        return math.pi - 0.5 * math.pi * torch.sigmoid(2 * features)
    return math.pi * torch.tanh(features)


def embedding_norm(embedding: str, n_inputs: int) -> nn.Module:
    """What normalises the pre-layer's outputs before the angle map of :func:`feature_transform`.

    Angle and zz embeddings: ``BatchNorm1d`` (one mean and scale per circuit input). Without it the
    projection of a trained trunk drifts far outside the range where ``tanh`` has a slope (standardised
    image features reach z-scores in the hundreds): every angle saturates at +-pi and the quantum
    layer stops learning (MNIST 8 qubits, 2 layers, Adam at 0.02: 0.12 test accuracy without, 0.91 with).
    Amplitude embedding: nothing, since ``f / ||f||`` is scale-free already.
    """
    if embedding == "amplitude":
        return nn.Identity()
    return EmbeddingNorm(n_inputs)


class EmbeddingNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` written with plain tensor reductions, usable on its first ``m`` channels.

    Same statistics, running averages and state dict as ``BatchNorm1d``; torch's own CPU kernel
    gives other bits on 1 and 2 threads, which Adam's first steps then amplify, whereas a search
    must end with the same bits in a one-thread worker and a multi-threaded serial run. The
    SuperCircuit normalises a candidate with ``n`` inputs by the first ``n`` channels of its
    family's norm (:meth:`first`).
    """

    # always set: the norm is built with BatchNorm's defaults (track_running_stats, momentum 0.1)
    momentum: float
    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.first(features, features.shape[1])

    def first(self, features: torch.Tensor, m: int) -> torch.Tensor:
        """Normalise ``features`` (batch, m) by the first ``m`` channels (updating their running
        statistics in training mode)."""
        if self.training:
            mean = features.mean(0)
            centred = features - mean
            var = (centred * centred).mean(0)
            with torch.no_grad():
                unbiased = var * (len(features) / max(len(features) - 1, 1))
                self.running_mean[:m].mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var[:m].mul_(1 - self.momentum).add_(self.momentum * unbiased)
                self.num_batches_tracked.add_(1)
        else:
            centred, var = features - self.running_mean[:m], self.running_var[:m]
        return centred * torch.rsqrt(var + self.eps) * self.weight[:m] + self.bias[:m]


#: the default convolutional pre-layer of ``hidden="cnn"``: 5x5 conv channels, then a dense width
CNN_DEFAULT = (8, 16, 128)
#: what ``hidden`` accepts (see :func:`check_hidden`): an integer width, a sequence of dense
#: widths, or ``"cnn"`` / ``"cnn-C1-...-Ck-D"``
Hidden = int | tuple[int, ...] | list[int] | str


def check_hidden(hidden: Hidden, allow_zero: bool = True) -> int | tuple[int, ...] | str:
    """Validate a pre-layer specification and return it in canonical form (see :func:`classical_trunk`).

    ``hidden`` is an integer width, a tuple of widths, or ``"cnn"`` / ``"cnn-C1-...-Ck-D"``.
    """
    low = 0 if allow_zero else 1
    allowed = (f"an integer >= {low}, a tuple of integers >= 1 (dense widths), or 'cnn' / "
               "'cnn-C1-...-Ck-D' (5x5 conv channels C, then a dense width D)")
    if is_integer(hidden):
        return check_int("hidden", hidden, low, allowed=allowed)
    if isinstance(hidden, str):
        parts = hidden.split("-")
        if parts[0] == "cnn":
            if len(parts) == 1:
                return "cnn"
            if len(parts) >= 3 and all(p.isdigit() and int(p) >= 1 for p in parts[1:]):
                return "-".join(["cnn"] + [str(int(p)) for p in parts[1:]])
        raise InvalidArgument("hidden", hidden, allowed)
    if isinstance(hidden, (tuple, list)) and hidden and all(is_integer(h) and h >= 1 for h in hidden):
        return int(hidden[0]) if len(hidden) == 1 else tuple(int(h) for h in hidden)
    raise InvalidArgument("hidden", hidden, allowed)


def classical_trunk(n_features: int, hidden: Hidden, dropout: float) -> tuple[nn.Sequential, int]:
    """The pre-layer without its last Linear: ``(module, output width)``.

    * ``hidden=h`` (int, the paper's 64 by default): ``Linear(n_features, h), ReLU, Dropout``;
      ``h=0``: nothing (width ``n_features``);
    * ``hidden=(h1, h2, ...)``: one ``Linear, ReLU, Dropout`` per width;
    * ``hidden="cnn"`` (= ``"cnn-8-16-128"``) or ``"cnn-C1-...-Ck-D"``, for square single-channel images
      given as ``side * side`` flat features: per channel count ``C``, ``Conv2d(5x5, padding 2), GELU,
      MaxPool2d(2)``; then ``Flatten, Linear(., D), GELU, Dropout``. (GELU, not ReLU: trained as a
      SuperCircuit trunk under the sandwich rule, a ReLU CNN lost most of its units for good.)
    """
    hidden = check_hidden(hidden)
    layers: list[nn.Module] = []
    if isinstance(hidden, str):
        sizes = CNN_DEFAULT if hidden == "cnn" else tuple(int(p) for p in hidden.split("-")[1:])
        channels, dense = sizes[:-1], sizes[-1]
        side = math.isqrt(n_features)
        if side * side != n_features or side < 2 ** len(channels):
            raise ValueError(f"invalid hidden={hidden!r} for {n_features} features: a convolutional pre-layer "
                             f"needs square single-channel images (side * side features, side >= "
                             f"{2 ** len(channels)})")
        layers.append(nn.Unflatten(1, (1, side, side)))
        previous = 1
        for c in channels:
            layers += [nn.Conv2d(previous, c, 5, padding=2), nn.GELU(), nn.MaxPool2d(2)]
            previous, side = c, side // 2
        layers += [nn.Flatten(), nn.Linear(previous * side * side, dense), nn.GELU(), nn.Dropout(dropout)]
        return nn.Sequential(*layers), dense
    width = n_features
    for h in ((hidden,) if isinstance(hidden, int) else hidden):
        if h > 0:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
    return nn.Sequential(*layers), width


def classical_pre_layer(n_features: int, n_outputs: int, hidden: Hidden, dropout: float) -> nn.Module:
    """The paper's pre-layer: Linear -> hidden, ReLU, dropout, Linear -> what the embedding needs
    (``hidden=0``: a single Linear). ``hidden`` may also be a tuple of widths or a convolutional
    trunk (``"cnn"``); see :func:`classical_trunk`. The last module is always the Linear to
    ``n_outputs``."""
    if check_hidden(hidden) == 0:
        return nn.Linear(n_features, n_outputs)
    trunk, width = classical_trunk(n_features, hidden, dropout)
    return nn.Sequential(*trunk, nn.Linear(width, n_outputs))


class HQNN(nn.Module):
    """Pre-layer -> quantum layer (a qiskit-machine-learning ``NeuralNetwork`` inside ``TorchConnector``:
    :class:`~qiskit_qnas.engines.StatevectorConnector`, which trains the statevector engine by
    vector-Jacobian products) -> Linear head from the ``<Z_i>`` of every qubit to the class logits.

    Args:
        arch: the quantum layer's architecture.
        n_features: input width; n_classes: number of logits.
        hidden, dropout: pre-layer width (0 for none; or a tuple of widths, or ``"cnn"``: see
            :func:`classical_trunk`) and dropout.
        engine, estimator: which QNN runs the circuit (see :func:`~qiskit_qnas.circuits.make_qnn`).
        seed: seeds the initial weights (classical and quantum).
    """

    def __init__(self, arch: ArchitectureSpec, n_features: int, n_classes: int, hidden: Hidden = 64,
                 dropout: float = 0.1, engine: str = "statevector", estimator=None, seed: int | None = None, qnn=None):
        super().__init__()
        hidden = check_hidden(hidden)
        self.n_features, self.n_classes = check_int("n_features", n_features, 1), check_int("n_classes", n_classes, 2)
        self.arch = arch
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            self.pre = classical_pre_layer(self.n_features, arch.n_features, hidden, dropout)
            self.head = nn.Linear(arch.n_qubits, self.n_classes)
            self.norm = embedding_norm(arch.embedding, arch.n_features)
        if qnn is None:
            qnn = make_qnn(arch, engine=engine, estimator=estimator, input_gradients=True)
        qnn.input_gradients = True
        initial = torch.empty(arch.n_weights, dtype=torch.float64).uniform_(-math.pi, math.pi, generator=generator)
        self.quantum = StatevectorConnector(qnn, initial_weights=initial.numpy())

    def circuit_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The quantum layer's inputs (circuit parameters ``x``) for a batch of raw features."""
        return feature_transform(self.arch, self.norm(self.pre(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.quantum(self.circuit_inputs(x)).to(x.dtype))


def _cross_entropy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(X), y)


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Consecutive mini-batches of ``order``; a last batch of one sample joins the one before it
    (batch normalisation needs two samples to take a batch's statistics)."""
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def train_model(model: nn.Module, X: ArrayLike | torch.Tensor, y: ArrayLike | torch.Tensor, epochs: int = 30,
                batch_size: int = 32, lr: float = 0.02, seed: int | None = 0, weight_decay: float = 0.0,
                progress: Callable[[int, float], None] | None = None, cosine: bool = True,
                loss: Callable[..., torch.Tensor] = _cross_entropy) -> list[float]:
    """Mini-batch Adam on cross-entropy; returns the mean loss of every epoch.

    ``cosine``: the step size decays from ``lr`` to 0 along a cosine over the run (steadier final
    weights than a constant step). ``progress`` (optional) is called with (epoch, loss) after every
    epoch. ``loss(model, X_batch, y_batch)`` replaces the plain cross-entropy of ``model(X_batch)``
    (the SuperCircuit averages several members). Deterministic for a given ``seed`` (batch order
    and dropout masks). An :class:`HQNN` with small states trains on one torch thread (see
    :func:`~qiskit_qnas.engines.statevector.torch_threads_for`: on 2 cores, a second thread made
    even the cross-entropy of a batch of 32 3.5x slower, and 13x with the other core busy).
    """
    X = torch.as_tensor(np.asarray(X, dtype=np.float32))
    y = torch.as_tensor(np.asarray(y, dtype=np.int64))
    if len(X) != len(y) or len(X) < 2:
        raise ValueError(f"X and y must hold at least 2 samples and be of equal length, got {len(X)} and {len(y)}")
    seed = 0 if seed is None else int(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, int(epochs) * len(_batches(torch.arange(len(X)), batch_size)))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)) if cosine else 1.0)
    losses = []
    model.train()
    arch = getattr(model, "arch", None)
    threads = (torch_threads_for(batch_size * 2**arch.n_qubits) if isinstance(arch, ArchitectureSpec)
               else contextlib.nullcontext())
    with torch.random.fork_rng(), threads:
        torch.manual_seed(seed)  # dropout masks: the same seed trains the same model
        for epoch in range(int(epochs)):
            order = torch.randperm(len(X), generator=generator)
            total = 0.0
            for index in _batches(order, batch_size):
                optimizer.zero_grad()
                batch_loss = loss(model, X[index], y[index])
                batch_loss.backward()
                optimizer.step()
                schedule.step()
                total += float(batch_loss.detach()) * len(index)
            losses.append(total / len(X))
            if progress is not None:
                progress(epoch, losses[-1])
    model.eval()
    return losses


#: samples :func:`predict_logits` sends through a model at once
PREDICT_BATCH = 1024


@torch.no_grad()
def predict_logits(model: nn.Module, X: ArrayLike | torch.Tensor, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Logits of ``model`` in evaluation mode, computed in batches."""
    model.eval()
    X = torch.as_tensor(np.asarray(X, dtype=np.float32))
    return np.concatenate([model(X[i:i + batch_size]).numpy() for i in range(0, len(X), batch_size)] or
                          [np.zeros((0, getattr(model, "n_classes", 0)))])
