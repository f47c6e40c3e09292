"""The weight-sharing SuperCircuit: one set of weights for every member of a search space.

The SuperCircuit holds the weights of the largest member of a :class:`SearchSpace`, few-shot: the
classical trunk is shared by every candidate, and each embedding family has its own quantum part.

* a classical trunk ``Linear(n_features, hidden) -> ReLU -> Dropout`` shared by every candidate
  (or the deeper / convolutional trunk that ``hidden`` describes, see
  :func:`~qiskit_qnas.model.classical_trunk`);
* per embedding, a projection ``Linear(hidden, m_max)`` and its normalisation
  (:func:`~qiskit_qnas.model.embedding_norm`), ``m_max`` being what that embedding needs at the
  largest qubit count (``n`` angles, or ``2**n`` amplitudes); a candidate with ``n`` qubits uses the
  first ``n`` (or ``2**n``) rows and statistics;
* per embedding, quantum weights of shape ``(max_layers, max_qubits, 3)``, one per (layer, qubit,
  rx/ry/rz slot); a candidate's weight k is its family's weight at ``circuits.weight_slots(arch)[k]``,
  so an RY weight on qubit 2 of layer 1 is the same number in every candidate of the family;
* per embedding, a head ``Linear(max_qubits, n_classes)``; a candidate with ``n`` qubits uses its
  first ``n`` columns (with ``head=None`` there is none: the first ``n_classes`` read-outs are the
  scores), after the per-embedding read-out normalisation of ``output_norm`` (its first ``n``
  statistics).

With ``hidden=None`` there is no trunk and no trained projection: one
:class:`~qiskit_qnas.model.FixedInputMap`, shared by every embedding and fitted on the training split,
gives a candidate with ``m`` circuit inputs its first ``m`` (and no trained normalisation follows it).

Why few-shot: the families' circuits differ in kind (an angle map, a phase map whose ``<Z>`` is 0
on its own, an amplitude state, entangling feature maps), so one table of rotation angles and one
head cannot serve them all; shared across families, the family that trains fastest sets the weights
and the others are ranked by how well they tolerate them, not by what they can learn.

Training follows the sandwich rule: every step trains the largest and the smallest member of one
family (the families take turns) and a few uniformly sampled members on the same mini-batch, and
their losses are averaged. It runs on the exact torch engine directly (autograd through
:class:`~qiskit_qnas.engines.StatevectorProgram`), which is the same simulation ``TorchConnector``
wraps in :class:`~qiskit_qnas.model.HQNN`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from typing import Protocol, cast

import numpy as np
import torch
from torch import nn

from .circuits import WEIGHT_SLOTS, compiled_program, weight_slots
from .engines.statevector import torch_threads_for
from .model import (
    HQNN,
    EmbeddingNorm,
    FixedInputMap,
    Hidden,
    ReadoutNorm,
    check_head,
    check_hidden,
    classical_trunk,
    embedding_norm,
    feature_transform,
    train_model,
)
from .space import Architecture, SearchSpace
from .spec import embedding_width

_SLOT = len(WEIGHT_SLOTS)


@functools.lru_cache(maxsize=1024)
def _slot_index(arch: Architecture, max_qubits: int) -> torch.Tensor:
    """Flat indices into the ``(max_layers, max_qubits, 3)`` weight tensor of ``arch``'s weights."""
    return torch.tensor([(layer * max_qubits + q) * _SLOT + s for layer, q, s in weight_slots(arch)],
                        dtype=torch.long)


@functools.lru_cache(maxsize=32)
def _basis_inputs(n_qubits: int) -> torch.Tensor:
    """``pi * bits(k)`` for every basis state k (row k): RY(pi) on each 1-bit prepares ``|k>``."""
    k = np.arange(2**n_qubits)
    return torch.tensor(np.pi * ((k[:, None] >> np.arange(n_qubits)) & 1), dtype=torch.float64)


@functools.lru_cache(maxsize=32)
def _z_signs(n_qubits: int) -> torch.Tensor:
    """``(2**n, n)``: +1 / -1 when qubit i of basis state k is 0 / 1 (Qiskit's little-endian order)."""
    k = np.arange(2**n_qubits)
    return torch.tensor(1 - 2 * ((k[:, None] >> np.arange(n_qubits)) & 1), dtype=torch.float64)


def amplitude_expectation(arch: Architecture, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``<Z_i>`` of an amplitude-embedded candidate without simulating its state preparation.

    The amplitude embedding prepares exactly ``f / ||f||``; the rest of the circuit is the same as
    the ``angle_y`` twin's after its embedding, so the twin run on the basis states (RY(pi) on every
    1-bit) gives the trainable part's matrix row by row, and the final state is ``f / ||f||`` times
    that matrix. Equal to the compiled amplitude circuit (``compiled_program(arch)``) to rounding,
    and much faster: the RY tree of the embedding has ``2**n - 1`` per-sample angles.
    """
    n = arch.n_qubits
    twin = dataclasses.replace(arch, embedding="angle_y", learning_rate=None)
    rows = compiled_program(twin).state(_basis_inputs(n), weights)  # row k = U|k>
    features = features.to(torch.float64)
    amplitudes = features / torch.sqrt((features * features).sum(1, keepdim=True) + 1e-24)
    psi = amplitudes.to(rows.dtype) @ rows
    probs = psi * psi if not psi.is_complex() else psi.real**2 + psi.imag**2
    return probs @ _z_signs(n)


#: embeddings that leave every ``<Z_i>`` at 0 on their own (the feature sits in a phase)
PHASE_EMBEDDINGS = ("angle_z", "zz")


def initial_quantum_weights(embedding: str, n_layers: int, n_qubits: int) -> torch.Tensor:
    """Initial shared weights ``(n_layers, n_qubits, 3)`` of one embedding family.

    Small angles (``0.1 * N(0, 1)``), so that every member starts close to its embedding alone; for
    the phase embeddings (``angle_z``, ``zz``: H then Z rotations put each qubit on the equator,
    where ``<Z> = 0``) the first layer's RY starts at pi/2 instead, which turns that phase into a
    ``Z`` population: without it such a member starts with outputs and gradients ~0.1 of the others'.
    Every rotation block has an RY, so the rule holds for every member of the family.
    """
    weights = 0.1 * torch.randn(n_layers, n_qubits, _SLOT, dtype=torch.float64)
    if embedding in PHASE_EMBEDDINGS:
        weights[0, :, WEIGHT_SLOTS["ry"]] += math.pi / 2
    return weights


class NoisyChannel(Protocol):
    """What :attr:`SuperCircuit.noise` provides (a :class:`~qiskit_qnas.noise.TrainingNoise`, a module
    above this one)."""

    def expectation(self, arch: Architecture, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor: ...


class SuperCircuit(nn.Module):
    """Shared weights of every HQNN in ``space`` (see the module docstring for the slicing rule).

    Args:
        space: the search space.
        n_features: width of the (preprocessed) input data.
        n_classes: number of classes (logits).
        hidden: width of the classical trunk (the paper's 64), a tuple of widths, or ``"cnn"`` /
            ``"cnn-C1-...-Ck-D"`` for a convolutional trunk on square images (see
            :func:`~qiskit_qnas.model.classical_trunk`); None for none (fixed input maps).
        dropout: dropout after the trunk.
        seed: seeds the initial weights.
        head, output_norm: as :class:`~qiskit_qnas.model.HQNN`'s (``head=None`` needs at least as
            many qubits as classes in every member).

    ``noise`` (default None): a :class:`~qiskit_qnas.noise.TrainingNoise`; when set, the forward pass
    in training mode runs through its noisy channel (noise-adaptive training, also of the
    fine-tuning copies); evaluation mode stays exact.
    """

    noise: NoisyChannel | None = None

    def __init__(self, space: SearchSpace, n_features: int, n_classes: int, hidden: Hidden = 64,
                 dropout: float = 0.1, seed: int | None = 0, head: str | None = "linear", output_norm: bool = False):
        super().__init__()
        hidden = check_hidden(hidden, allow_zero=False)
        self.space = space
        self.n_features, self.n_classes, self.hidden, self.dropout = int(n_features), int(n_classes), hidden, dropout
        self.head_kind, self.output_norm = check_head(head, space.qubits[0], self.n_classes), bool(output_norm)
        n_max, layers_max = space.max_qubits, space.max_layers
        with torch.random.fork_rng():
            torch.manual_seed(0 if seed is None else int(seed))
            if hidden is None:
                self.trunk = nn.Sequential()
                # one map for every family: its components are nested, so each takes the first m it needs,
                # and the training split is scanned and decomposed once
                shared = FixedInputMap(self.n_features, max(embedding_width(e, n_max) for e in space.embeddings))
                self.projections = nn.ModuleDict({e: shared for e in space.embeddings})
                self.norms = nn.ModuleDict({e: nn.Identity() for e in space.embeddings})
            else:
                self.trunk, width = classical_trunk(self.n_features, hidden, dropout)
                self.projections = nn.ModuleDict({e: nn.Linear(width, embedding_width(e, n_max))
                                                  for e in space.embeddings})
                self.norms = nn.ModuleDict({e: embedding_norm(e, embedding_width(e, n_max))
                                            for e in space.embeddings})
            self.quantum_weights = nn.ParameterDict({e: nn.Parameter(initial_quantum_weights(e, layers_max, n_max))
                                                     for e in space.embeddings})
            self.heads = nn.ModuleDict({e: nn.Linear(n_max, self.n_classes) for e in space.embeddings}
                                       if self.head_kind == "linear" else {})
        self.readout_norms = nn.ModuleDict({e: ReadoutNorm(n_max) for e in space.embeddings}
                                           if self.output_norm else {})

    # --- slicing ---------------------------------------------------------------------------------
    def _check(self, arch: Architecture) -> None:
        if arch.embedding not in self.projections or arch.n_qubits > self.space.max_qubits \
                or arch.n_layers > self.space.max_layers:
            raise ValueError(f"architecture {arch} is not a member of the SuperCircuit's space {self.space!r}")

    def circuit_weights(self, arch: Architecture) -> torch.Tensor:
        """``arch``'s circuit weights (ordered as ``arch.weight_params``), a view of the shared ones."""
        self._check(arch)
        return self.quantum_weights[arch.embedding].reshape(-1)[_slot_index(arch, self.space.max_qubits)]

    def embedding_features(self, arch: Architecture, x: torch.Tensor) -> torch.Tensor:
        """What the pre-layer gives ``arch``'s embedding, normalised (before
        :func:`~qiskit_qnas.model.feature_transform`)."""
        self._check(arch)
        m = arch.n_features
        projection = self.projections[arch.embedding]
        if isinstance(projection, FixedInputMap):
            return projection(x, m)
        projection = cast(nn.Linear, projection)
        features = nn.functional.linear(self.trunk(x), projection.weight[:m], projection.bias[:m])
        norm = self.norms[arch.embedding]
        if isinstance(norm, EmbeddingNorm):  # the first m statistics: shared by every member of the family
            features = norm.first(features, m)
        return features

    def circuit_inputs(self, arch: Architecture, x: torch.Tensor) -> torch.Tensor:
        """The circuit inputs (parameters ``x``) of ``arch`` for a batch of features."""
        return feature_transform(arch, self.embedding_features(arch, x))

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        """Logits of the candidate ``arch`` with the shared weights (amplitude candidates through
        :func:`amplitude_expectation`, the others through their compiled circuit; through the noisy
        training circuit of ``noise`` in training mode when it is set)."""
        if self.training and self.noise is not None:
            z = self.noise.expectation(arch, self.circuit_inputs(arch, x).to(torch.float64), self.circuit_weights(arch))
        elif arch.embedding == "amplitude":
            z = amplitude_expectation(arch, self.embedding_features(arch, x), self.circuit_weights(arch))
        else:
            inputs = self.circuit_inputs(arch, x).to(torch.float64)
            z = compiled_program(arch).expectation(inputs, self.circuit_weights(arch))
        return self.scores(arch, z.to(x.dtype))

    def scores(self, arch: Architecture, readouts: torch.Tensor) -> torch.Tensor:
        """The logits of ``arch``'s read-outs ``<Z_i>`` (its slice of the read-out normalisation and head)."""
        n = arch.n_qubits
        if self.output_norm:
            readouts = cast(ReadoutNorm, self.readout_norms[arch.embedding]).first(readouts, n)
        if self.head_kind is None:
            return readouts[:, :self.n_classes]
        head = cast(nn.Linear, self.heads[arch.embedding])
        return nn.functional.linear(readouts, head.weight[:, :n], head.bias)

    def extract(self, arch: Architecture, engine: str = "statevector", estimator=None) -> HQNN:
        """A standalone :class:`HQNN` of ``arch`` that inherits the shared weights (a copy)."""
        self._check(arch)
        model = HQNN(arch, self.n_features, self.n_classes, hidden=self.hidden, dropout=self.dropout,
                     engine=engine, estimator=estimator, head=self.head_kind, output_norm=self.output_norm)
        m, n = arch.n_features, arch.n_qubits
        projection = self.projections[arch.embedding]
        norm = self.norms[arch.embedding]
        with torch.no_grad():
            if isinstance(projection, FixedInputMap):
                fixed = cast(FixedInputMap, model.pre)
                for name in ("low", "span", "mean", "deviation", "fitted"):
                    getattr(fixed, name).copy_(getattr(projection, name))
                fixed.components.copy_(projection.components[:len(fixed.components)])
            else:
                # the trunk then the Linear to the embedding (hidden is never 0 here)
                pre = cast(nn.Sequential, model.pre)
                pre_output = cast(nn.Linear, pre[-1])
                pre[:-1].load_state_dict(self.trunk.state_dict())
                pre_output.weight.copy_(cast(nn.Linear, projection).weight[:m])
                pre_output.bias.copy_(cast(nn.Linear, projection).bias[:m])
            if isinstance(norm, EmbeddingNorm) and isinstance(model.norm, EmbeddingNorm):
                _copy_statistics(norm, model.norm, m, ("weight", "bias", "running_mean", "running_var"))
            if self.output_norm:
                _copy_statistics(self.readout_norms[arch.embedding], model.readout_norm, n,
                                 ("running_mean", "running_var"))
            model.quantum.weight.copy_(self.circuit_weights(arch).to(model.quantum.weight.dtype))
            if self.head_kind is not None:
                head = cast(nn.Linear, self.heads[arch.embedding])
                model_head = cast(nn.Linear, model.head)
                model_head.weight.copy_(head.weight[:, :n])
                model_head.bias.copy_(head.bias)
        model.eval()
        return model


def _copy_statistics(source: nn.Module, target: nn.Module, m: int, names: tuple[str, ...]) -> None:
    """Copy the first ``m`` channels of a shared normalisation into a candidate's own."""
    for name in (*names, "num_batches_tracked"):
        value = getattr(source, name)
        getattr(target, name).copy_(value if name == "num_batches_tracked" else value[:m])


def sandwich(space: SearchSpace, rng: np.random.Generator, n_random: int, step: int = 0) -> list[Architecture]:
    """The members trained in one step: the largest and the smallest of one embedding family, the
    families taking turns step by step (each family's weights get the same share of the steps,
    however unlike the families' circuits are), and ``n_random`` uniform samples of the space."""
    family = space.embeddings[step % len(space.embeddings)]
    extremes = [dataclasses.replace(member, embedding=family) for member in (space.largest(rng), space.smallest(rng))]
    return extremes + [space.sample(rng) for _ in range(n_random)]


def train_supercircuit(supercircuit: SuperCircuit, X, y, epochs: int = 30, batch_size: int = 32, lr: float = 0.02,
                       n_random: int = 2, seed: int | None = 0, weight_decay: float = 0.0,
                       progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Train the shared weights with the sandwich rule; returns the mean loss of every epoch.

    Every mini-batch trains ``2 + n_random`` members (largest, smallest, ``n_random`` uniform), their
    cross-entropy losses averaged into one step of Adam (step size on a cosine decay to 0).
    ``progress(epoch, loss)`` is called after every epoch. Deterministic for a given ``seed``.
    """
    seed = 0 if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    space = supercircuit.space

    steps = itertools.count()

    def sandwich_loss(model: SuperCircuit, X_batch: torch.Tensor, y_batch: torch.Tensor) -> torch.Tensor:
        members = sandwich(space, rng, n_random, next(steps))
        # a sum of at least one tensor (from the start value 0) is a tensor
        total = cast(torch.Tensor, sum(nn.functional.cross_entropy(model(X_batch, arch), y_batch) for arch in members))
        return total / len(members)

    def check_and_report(epoch: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise FloatingPointError(f"SuperCircuit training diverged at epoch {epoch} (loss {loss})")
        if progress is not None:
            progress(epoch, loss)

    # small states: torch's thread pool costs more than it saves (see engines.statevector)
    with torch_threads_for(batch_size * 2**space.max_qubits):
        return train_model(supercircuit, X, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                           weight_decay=weight_decay, progress=check_and_report, loss=sandwich_loss)


class _Member(nn.Module):
    """One member of a SuperCircuit as a plain module (for :func:`train_model`)."""

    def __init__(self, supercircuit: SuperCircuit, arch: Architecture):
        super().__init__()
        self.supercircuit, self.arch = supercircuit, arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supercircuit(x, self.arch)


def finetune(supercircuit: SuperCircuit, arch: Architecture, X, y, epochs: int, batch_size: int = 16,
             lr: float = 0.01, seed: int | None = 0) -> HQNN:
    """Inherit ``arch``'s weights and fine-tune them on (X, y); returns the standalone :class:`HQNN`.

    Training runs on a private copy of the SuperCircuit restricted to ``arch`` (plain autograd
    through the exact engine, faster than per-sample Jacobians through ``TorchConnector``); only
    ``arch``'s slice receives gradients, and the shared weights are left untouched.
    """
    if epochs > 0:
        member = _Member(copy.deepcopy(supercircuit), arch)  # train_model picks its threads from member.arch
        train_model(member, X, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        supercircuit = member.supercircuit
    return supercircuit.extract(arch)
