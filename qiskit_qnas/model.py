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
        normalised = centred * torch.rsqrt(var + self.eps)
        return normalised if self.weight is None else normalised * self.weight[:m] + self.bias[:m]


class ReadoutNorm(EmbeddingNorm):
    """QuantumNAT's post-measurement normalisation: every qubit's read-out ``<Z_i>`` centred and scaled
    by its batch statistics in training and by their running estimates at inference (no trainable
    scale or shift), before the head.

    Noise shrinks and shifts the read-outs (depolarising errors pull ``<Z_i>`` towards 0, readout
    errors towards a bias); trained under the target's noise (``noise_aware``), the statistics are
    those of the noisy read-outs, and the head sees read-outs on the scale it was trained on, on
    the target too.
    """

    def __init__(self, n_qubits: int):
        super().__init__(n_qubits, affine=False)


class FixedInputMap(nn.Module):
    """The map from the data's features to the circuit's inputs when no trainable layer precedes
    the circuit (``hidden=None``); fitted once on the training split, never trained.

    * A circuit with at least as many inputs ``m`` as the ``d`` features takes them one to one, in
      order (feature k on input k: pooled pixel k on qubit k of an angle embedding, on rotation
      ``k // n`` of qubit ``k % n`` of ``dense``, amplitude k of ``amplitude``), each scaled to [0, 1]
      by the training split's minimum and maximum (scikit-learn's ``MinMaxScaler``); inputs beyond
      ``d`` get 0 (an angle of 0, or a zero amplitude). Min-max keeps what a standardisation would
      lose: a pixel that is off stays 0, so an amplitude vector stays non-negative and an angle stays
      in [0, pi] (MNIST digits 0-3 on 16 pooled pixels, 4 qubits, stand-alone training: amplitude at 4
      layers 0.90 test accuracy with min-max against 0.80 standardised, dense 0.86 against 0.46).
    * A circuit with fewer inputs takes the first ``m`` principal components of the standardised
      features, each scaled to unit variance (whitened PCA): of the linear maps to ``m`` inputs, the
      one that keeps the most of the data's variance. The components are nested, so a SuperCircuit's
      members of every width share one map.

    Both are invariant to a per-feature standardisation before them (the estimator's
    ``scale_inputs``). ``forward(x, m)`` gives the first ``m`` inputs (default: ``n_outputs``).
    :func:`train_model` fits an unfitted map on the data it trains on; :meth:`fit` does it explicitly.
    """

    low: torch.Tensor
    span: torch.Tensor
    mean: torch.Tensor
    deviation: torch.Tensor
    components: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, n_features: int, n_outputs: int):
        super().__init__()
        self.n_features = check_int("n_features", n_features, 1)
        self.n_outputs = check_int("n_outputs", n_outputs, 1)
        for name, value in (("low", 0.0), ("span", 1.0), ("mean", 0.0), ("deviation", 1.0)):
            self.register_buffer(name, torch.full((self.n_features,), value))
        self.register_buffer("components", torch.zeros(min(self.n_features, self.n_outputs), self.n_features))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, X: ArrayLike | torch.Tensor) -> FixedInputMap:
        """Fit the min-max scaling and the principal components on ``X`` (samples, features)."""
        X = np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features or len(X) < 2 or not np.all(np.isfinite(X)):
            raise ValueError(f"a fixed input map of {self.n_features} features is fitted on at least 2 finite "
                             f"samples of {self.n_features} features, got an array of shape {X.shape}")
        low, span = X.min(0), np.ptp(X, axis=0)
        mean, deviation = X.mean(0), X.std(0)
        # a constant feature maps to 0
        span[span < 1e-12] = 1.0
        deviation[deviation < 1e-12] = 1.0
        _, singular, directions = np.linalg.svd((X - mean) / deviation, full_matrices=False)
        k = len(self.components)
        directions = directions[:k]
        # a deterministic sign per component: its largest entry positive
        largest = np.abs(directions).argmax(1)
        directions *= np.sign(directions[np.arange(len(directions)), largest])[:, None]
        spread = singular[:k] / math.sqrt(len(X) - 1)
        # a direction of no variance (fewer samples or independent features than components) maps to 0
        directions *= np.where(spread > 1e-12, 1.0 / np.maximum(spread, 1e-12), 0.0)[:, None]
        components = np.zeros((k, self.n_features))
        components[:len(directions)] = directions
        for name, value in (("low", low), ("span", span), ("mean", mean), ("deviation", deviation),
                            ("components", components)):
            buffer = getattr(self, name)
            buffer.copy_(torch.as_tensor(value, dtype=buffer.dtype))
        self.fitted.fill_(True)
        return self

    def forward(self, x: torch.Tensor, m: int | None = None) -> torch.Tensor:
        if not bool(self.fitted):
            raise RuntimeError("the fixed input map (hidden=None) is not fitted: call fit(X_train) on it, or train "
                               "the model with train_model, which fits it on the training data")
        m = self.n_outputs if m is None else int(m)
        if m >= self.n_features:
            scaled = (x - self.low.to(x.dtype)) / self.span.to(x.dtype)
            return nn.functional.pad(scaled, (0, m - self.n_features))
        standardised = (x - self.mean.to(x.dtype)) / self.deviation.to(x.dtype)
        return standardised @ self.components[:m].to(x.dtype).T


def fit_input_maps(model: nn.Module, X: ArrayLike | torch.Tensor) -> None:
    """Fit every unfitted :class:`FixedInputMap` of ``model`` on ``X`` (the training data)."""
    for module in model.modules():
        if isinstance(module, FixedInputMap) and not bool(module.fitted):
            module.fit(X)


class FirstQubits(nn.Module):
    """The head of ``head=None``: the class scores are the read-outs of the first ``n_classes``
    qubits (no trainable weight after the circuit)."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.n_classes = n_classes

    def forward(self, readouts: torch.Tensor) -> torch.Tensor:
        return readouts[..., :self.n_classes]


#: what ``head`` accepts: a trainable ``Linear(n_qubits, n_classes)`` on every qubit's read-out, or
#: None (the read-outs of the first ``n_classes`` qubits are the class scores)
HEADS = ("linear", None)


def check_head(head: str | None, n_qubits: int | None = None, n_classes: int | None = None) -> str | None:
    """Validate ``head``; with sizes, refuse ``head=None`` when there are fewer qubits than classes."""
    if head not in HEADS:
        raise InvalidArgument("head", head, "'linear' (a trainable Linear from every qubit's <Z> to the logits) "
                              "or None (the <Z> of the first n_classes qubits are the class scores)")
    if head is None and n_qubits is not None and n_classes is not None and n_qubits < n_classes:
        raise InvalidArgument("head", head, f"'linear' with {n_qubits} qubits and {n_classes} classes (head=None "
                              f"reads one class per qubit: it needs at least {n_classes} qubits)")
    return head


#: the default convolutional pre-layer of ``hidden="cnn"``: 5x5 conv channels, then a dense width
CNN_DEFAULT = (8, 16, 128)
#: what ``hidden`` accepts (see :func:`check_hidden`): an integer width, a sequence of dense
#: widths, or ``"cnn"`` / ``"cnn-C1-...-Ck-D"``
#: or None (no trainable layer before the circuit: a :class:`FixedInputMap`)
Hidden = int | tuple[int, ...] | list[int] | str | None


def check_hidden(hidden: Hidden, allow_zero: bool = True) -> int | tuple[int, ...] | str | None:
    """Validate a pre-layer specification and return it in canonical form (see :func:`classical_trunk`).

    ``hidden`` is an integer width, a tuple of widths, ``"cnn"`` / ``"cnn-C1-...-Ck-D"``, or None
    (no trainable layer before the circuit, see :class:`FixedInputMap`).
    """
    low = 0 if allow_zero else 1
    allowed = (f"an integer >= {low}, a tuple of integers >= 1 (dense widths), 'cnn' / "
               "'cnn-C1-...-Ck-D' (5x5 conv channels C, then a dense width D), or None (no trainable layer "
               "before the circuit)")
    if hidden is None:
        return None
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
    if hidden is None:
        raise ValueError("hidden=None has no classical trunk (see FixedInputMap)")
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
    ``n_outputs``. ``hidden=None``: the untrained :class:`FixedInputMap` instead."""
    hidden = check_hidden(hidden)
    if hidden is None:
        return FixedInputMap(n_features, n_outputs)
    if hidden == 0:
        return nn.Linear(n_features, n_outputs)
    trunk, width = classical_trunk(n_features, hidden, dropout)
    return nn.Sequential(*trunk, nn.Linear(width, n_outputs))


def readout_module(head: str | None, n_qubits: int, n_classes: int) -> nn.Module:
    """The head of ``head`` (see :data:`HEADS`): ``Linear(n_qubits, n_classes)`` or :class:`FirstQubits`."""
    if check_head(head, n_qubits, n_classes) == "linear":
        return nn.Linear(n_qubits, n_classes)
    return FirstQubits(n_classes)


class HQNN(nn.Module):
    """Pre-layer -> quantum layer (a qiskit-machine-learning ``NeuralNetwork`` inside ``TorchConnector``:
    :class:`~qiskit_qnas.engines.StatevectorConnector`, which trains the statevector engine by
    vector-Jacobian products) -> head from the ``<Z_i>`` of the qubits to the class logits.

    Args:
        arch: the quantum layer's architecture.
        n_features: input width; n_classes: number of logits.
        hidden, dropout: pre-layer width (0 for a single Linear; a tuple of widths, or ``"cnn"``: see
            :func:`classical_trunk`; None for no trainable layer before the circuit, the features
            entering through a :class:`FixedInputMap`) and dropout.
        head: ``"linear"`` (``Linear(n_qubits, n_classes)``, default) or None (the read-outs of the
            first ``n_classes`` qubits are the logits; needs ``n_qubits >= n_classes``).
        output_norm: QuantumNAT's post-measurement normalisation of the read-outs before the head
            (:class:`ReadoutNorm`); default False.
        engine, estimator: which QNN runs the circuit (see :func:`~qiskit_qnas.circuits.make_qnn`).
        seed: seeds the initial weights (classical and quantum).
    """

    def __init__(self, arch: ArchitectureSpec, n_features: int, n_classes: int, hidden: Hidden = 64,
                 dropout: float = 0.1, engine: str = "statevector", estimator=None, seed: int | None = None, qnn=None,
                 head: str | None = "linear", output_norm: bool = False):
        super().__init__()
        hidden = check_hidden(hidden)
        self.n_features, self.n_classes = check_int("n_features", n_features, 1), check_int("n_classes", n_classes, 2)
        check_head(head, arch.n_qubits, self.n_classes)
        self.arch = arch
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            self.pre = classical_pre_layer(self.n_features, arch.n_features, hidden, dropout)
            self.head = readout_module(head, arch.n_qubits, self.n_classes)
            # the fixed map's outputs are scaled already (and a trained affine norm would be a trained layer)
            self.norm = nn.Identity() if hidden is None else embedding_norm(arch.embedding, arch.n_features)
        self.readout_norm = ReadoutNorm(arch.n_qubits) if output_norm else nn.Identity()
        if qnn is None:
            qnn = make_qnn(arch, engine=engine, estimator=estimator, input_gradients=True)
        qnn.input_gradients = True
        initial = torch.empty(arch.n_weights, dtype=torch.float64).uniform_(-math.pi, math.pi, generator=generator)
        self.quantum = StatevectorConnector(qnn, initial_weights=initial.numpy())

    def circuit_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The quantum layer's inputs (circuit parameters ``x``) for a batch of raw features."""
        return feature_transform(self.arch, self.norm(self.pre(x)))

    def scores(self, readouts: torch.Tensor) -> torch.Tensor:
        """The logits of a batch of read-outs ``<Z_i>`` (from this engine or a target)."""
        return self.head(self.readout_norm(readouts))

    @torch.no_grad()
    def readout_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` with ``logits = readouts @ W.T + b`` in evaluation mode (the read-out
        normalisation and the head are both affine there), in float64."""
        n = self.arch.n_qubits
        if isinstance(self.head, nn.Linear):
            weight, bias = self.head.weight.double().numpy().copy(), self.head.bias.double().numpy().copy()
        else:
            weight, bias = np.eye(n)[:self.n_classes], np.zeros(self.n_classes)
        if isinstance(self.readout_norm, ReadoutNorm):
            inverse = torch.rsqrt(self.readout_norm.running_var.double() + self.readout_norm.eps).numpy()
            bias = bias - weight @ (inverse * self.readout_norm.running_mean.double().numpy())
            weight = weight * inverse
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(self.quantum(self.circuit_inputs(x)).to(x.dtype))


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
    fit_input_maps(model, X)
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
