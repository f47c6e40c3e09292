"""The search vocabulary: :class:`Architecture` (one HQNN's quantum layer) and :class:`SearchSpace`.

An architecture is a value (its fields, validation, identity and sizes are
:class:`~qiskit_qnas.spec.ArchitectureSpec`'s): immutable, hashable, ordered, and round-trips through
``to_dict``/``from_dict``, a short string ``key``, an integer gene (``SearchSpace.encode`` /
``SearchSpace.decode``) and the mixed-variable gene pymoo searches over (``SearchSpace.variables``,
``SearchSpace.encode_vars`` / ``SearchSpace.decode_vars``). :class:`Architecture` adds its Qiskit and
torch views: the circuit, the QNN, the HQNN model and the cutting cost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pymoo.core.variable import Choice, Integer, Real, Variable

from .circuits import build_circuit, make_qnn
from .cutting import cutting_cost
from .model import HQNN
from .spec import (
    DEFAULT_EMBEDDINGS,
    EMBEDDINGS,
    ENTANGLERS,
    MAX_AMPLITUDE_QUBITS,
    MAX_LAYERS,
    MAX_QUBITS,
    RANGED_ENTANGLERS,
    ROTATION_GATES,
    ROTATIONS,
    ArchitectureSpec,
)
from .validation import InvalidArgument, check_choice, is_integer, is_number

if TYPE_CHECKING:
    from qiskit.circuit import QuantumCircuit
    from qiskit.primitives import BaseEstimatorV2
    from qiskit_machine_learning.neural_networks import NeuralNetwork

    from .cutting import CuttingCost


@dataclass(frozen=True, eq=True)
class Architecture(ArchitectureSpec):
    """The quantum layer of one hybrid quantum-classical network, with its Qiskit and torch views.

    Fields, validation, identity and sizes are :class:`~qiskit_qnas.spec.ArchitectureSpec`'s; this class
    adds :meth:`circuit`, :meth:`qnn`, :meth:`model` and :meth:`cutting_cost`.

    Args:
        n_qubits: number of qubits (width).
        n_layers: number of trainable layers (rotation block then entangler).
        embedding: how classical features enter: ``angle_x``/``angle_y`` (RX/RY(x_i) on qubit i),
            ``angle_z`` (H then RZ(x_i), so the phase carries the feature), ``amplitude`` (2**n real
            features as amplitudes, prepared by a tree of uniformly controlled RY rotations) or
            ``zz`` (H, RZ(2 x_i), then RZZ(2 (pi - x_i)(pi - x_j)) on neighbouring qubits) or
            ``dense`` (4 n features, four on every qubit on successive RY, RZ, RX, RY rotations:
            feature ``k n + i`` on qubit i; QuantumNAS's encoder of 16 pooled pixels on 4 qubits; not
            in a search space's default embeddings).
        rotation: trainable block on every qubit of every layer: ``ry``, ``rxry`` or ``rxryrz``.
        entangler: CNOT pattern of each layer (one value applies to all layers): ``all`` =
            CNOT(i, (i+r) mod n) for every i; ``odd`` / ``even`` = those pairs whose control i is odd
            / even; ``chain`` = CNOT(i, i+1) without wrap; ``full`` = CNOT(i, j) for every i < j;
            ``none``.
        entangle_range: range r of each layer (one value applies to all layers), 1 <= r <= n-1.
            It only affects ``all``, ``odd`` and ``even``; it is stored as 1 for the others.
        learning_rate: optional fine-tuning learning rate searched with the architecture.
    """

    def circuit(self) -> QuantumCircuit:
        """The ``QuantumCircuit``: inputs in ``ParameterVector("x")``, weights in ``ParameterVector("w")``."""
        return build_circuit(self).circuit.copy()

    @property
    def input_params(self) -> list:
        return list(build_circuit(self).inputs)

    @property
    def weight_params(self) -> list:
        return list(build_circuit(self).weights)

    def qnn(self, engine: str = "statevector", estimator: BaseEstimatorV2 | None = None, input_gradients: bool = False,
            **kwargs: Any) -> NeuralNetwork:
        """A qiskit-machine-learning ``NeuralNetwork`` whose outputs are ``<Z_i>`` for every qubit i.

        ``engine="statevector"``: the exact, batched torch simulator of :meth:`circuit` (default).
        ``engine="estimator"``: ``EstimatorQNN`` over ``estimator`` (default ``StatevectorEstimator``).
        """
        return make_qnn(self, engine=engine, estimator=estimator, input_gradients=input_gradients, **kwargs)

    def model(self, n_features: int, n_classes: int, **kwargs: Any) -> HQNN:
        """The HQNN ``torch.nn.Module``: pre-layer, quantum layer through ``TorchConnector``, head."""
        return HQNN(self, n_features=n_features, n_classes=n_classes, **kwargs)

    def cutting_cost(self, qubit_budget: int, time_limit: float = 5.0) -> CuttingCost:
        """What circuit cutting needs to run this circuit on devices of ``qubit_budget`` qubits."""
        return cutting_cost(self, qubit_budget=qubit_budget, time_limit=time_limit)


def _bounds(field: str, value: Any, low: int, high: int) -> tuple[int, int]:
    if is_integer(value):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if isinstance(value, str) or len(pair) != 2 or not all(is_integer(v) for v in pair):
        # no rounding: 2.7 or True is not silently a qubit count
        raise InvalidArgument(field, value, f"an integer or a (min, max) pair of integers >= {low}")
    lo, hi = (int(v) for v in pair)
    if lo < low or hi < lo or hi > high:
        raise InvalidArgument(field, value, f"a (min, max) pair with {low} <= min <= max <= {high}")
    return lo, hi


def _choices(field: str, values: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    try:
        values = (values,) if isinstance(values, str) else tuple(values)
    except TypeError:
        raise InvalidArgument(field, values, f"one of, or a sequence of: {', '.join(allowed)}") from None
    if not values:
        raise ValueError(f"empty search space: {field} is empty; allowed: {', '.join(allowed)}")
    for value in values:
        check_choice(field, value, allowed)
    return tuple(dict.fromkeys(values))


class SearchSpace:
    """The set of architectures a search may pick from, and their integer-gene encoding.

    Args:
        qubits, layers, ranges: an integer or an inclusive ``(min, max)`` pair.
        embeddings, rotations, entanglers: the allowed values (see :class:`Architecture`).
        learning_rates: ``None`` (not searched) or a ``(low, high)`` pair searched on a log scale.

    The integer gene is ``[n_qubits, n_layers, embedding, rotation, entangler_1..L, range_1..L(, log10 lr)]``
    with ``L = max layers``; categorical genes are indices into the allowed values. Genes of layers
    beyond ``n_layers`` are ignored, and a range is clipped to ``n_qubits - 1``.

    The search uses the same genes as named mixed variables (:meth:`variables`): ``n_qubits``,
    ``n_layers`` and ``range_1..L`` are integers, ``embedding``, ``rotation`` and ``entangler_1..L``
    are categories holding the allowed names (so crossover and mutation never produce a value
    "between" two of them), ``log10_learning_rate`` is real.
    """

    def __init__(self, qubits=(2, 8), layers=(1, 4), embeddings=DEFAULT_EMBEDDINGS, rotations=ROTATIONS,
                 entanglers=ENTANGLERS, ranges=(1, 3), learning_rates=None):
        self.qubits = _bounds("qubits", qubits, 1, MAX_QUBITS)
        self.layers = _bounds("layers", layers, 1, MAX_LAYERS)
        self.embeddings = _choices("embeddings", embeddings, EMBEDDINGS)
        self.rotations = _choices("rotations", rotations, ROTATIONS)
        self.entanglers = _choices("entanglers", entanglers, ENTANGLERS)
        self.ranges = _bounds("ranges", ranges, 1, MAX_QUBITS - 1)
        if "amplitude" in self.embeddings and self.qubits[1] > MAX_AMPLITUDE_QUBITS:
            raise InvalidArgument("qubits", qubits, f"max <= {MAX_AMPLITUDE_QUBITS} when 'amplitude' is an embedding")
        if learning_rates is not None:
            try:
                pair = tuple(learning_rates)
            except TypeError:
                pair = ()
            if len(pair) != 2 or not all(is_number(v) for v in pair):
                raise InvalidArgument("learning_rates", learning_rates, "None or a (low, high) pair of numbers")
            lo, hi = (float(v) for v in pair)
            if not (0 < lo <= hi and math.isfinite(hi)):
                raise InvalidArgument("learning_rates", learning_rates,
                                      "None or a (low, high) pair with 0 < low <= high")
            learning_rates = (lo, hi)
        self.learning_rates = learning_rates

    # --- description --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"qubits": list(self.qubits), "layers": list(self.layers), "embeddings": list(self.embeddings),
                "rotations": list(self.rotations), "entanglers": list(self.entanglers),
                "ranges": list(self.ranges),
                "learning_rates": None if self.learning_rates is None else list(self.learning_rates)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        return cls(**data)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v!r}" for k, v in self.to_dict().items())
        return f"SearchSpace({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    # mutable-looking container of settings; compare with ==
    __hash__ = None  # type: ignore[assignment]  # the documented way to make instances unhashable

    @property
    def max_qubits(self) -> int:
        return self.qubits[1]

    @property
    def max_layers(self) -> int:
        return self.layers[1]

    @property
    def max_rotation_gates(self) -> int:
        return max(len(ROTATION_GATES[r]) for r in self.rotations)

    def __contains__(self, arch: object) -> bool:
        if not isinstance(arch, Architecture):
            return False
        lr_ok = (arch.learning_rate is None) if self.learning_rates is None else (
            arch.learning_rate is not None
            and self.learning_rates[0] * (1 - 1e-9) <= arch.learning_rate <= self.learning_rates[1] * (1 + 1e-9))
        return (self.qubits[0] <= arch.n_qubits <= self.qubits[1]
                and self.layers[0] <= arch.n_layers <= self.layers[1]
                and arch.embedding in self.embeddings and arch.rotation in self.rotations
                and all(e in self.entanglers for e in arch.entangler)
                and all(r == self._clip_range(self.ranges[0], arch.n_qubits) or
                        self.ranges[0] <= r <= self.ranges[1]
                        for e, r in zip(arch.entangler, arch.entangle_range) if e in RANGED_ENTANGLERS)
                and lr_ok)

    @staticmethod
    def _clip_range(r: int, n_qubits: int) -> int:
        return max(1, min(r, n_qubits - 1))

    # --- the integer gene -----------------------------------------------------------------------
    @property
    def n_genes(self) -> int:
        return 4 + 2 * self.max_layers + (self.learning_rates is not None)

    @property
    def integer_genes(self) -> np.ndarray:
        """Boolean mask of the genes that are integers (all but the optional log10 learning rate)."""
        mask = np.ones(self.n_genes, dtype=bool)
        if self.learning_rates is not None:
            mask[-1] = False
        return mask

    @property
    def gene_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive lower and upper bounds of every gene."""
        L = self.max_layers
        low: list[float] = [self.qubits[0], self.layers[0], 0, 0, *[0] * L, *[self.ranges[0]] * L]
        high: list[float] = [self.qubits[1], self.layers[1], len(self.embeddings) - 1, len(self.rotations) - 1]
        high += [len(self.entanglers) - 1] * L + [self.ranges[1]] * L
        if self.learning_rates is not None:
            low.append(math.log10(self.learning_rates[0]))
            high.append(math.log10(self.learning_rates[1]))
        return np.array(low, dtype=float), np.array(high, dtype=float)

    def decode(self, gene: Iterable[float]) -> Architecture:
        """The architecture of a gene (integers are rounded, then clipped into bounds)."""
        gene = np.asarray(list(gene), dtype=float)
        if gene.shape != (self.n_genes,) or not np.all(np.isfinite(gene)):
            raise ValueError(f"invalid gene {gene!r}; allowed: {self.n_genes} finite numbers")
        low, high = self.gene_bounds
        gene = np.clip(np.where(self.integer_genes, np.round(gene), gene), low, high)
        n, layers, emb, rot = (int(v) for v in gene[:4])
        L = self.max_layers
        entanglers = tuple(self.entanglers[int(v)] for v in gene[4:4 + layers])
        ranges = tuple(self._clip_range(int(v), n) for v in gene[4 + L:4 + L + layers])
        lr = None if self.learning_rates is None else float(10.0 ** gene[-1])
        return Architecture(n, layers, self.embeddings[emb], self.rotations[rot], entanglers, ranges, lr)

    def encode(self, arch: Architecture) -> np.ndarray:
        """The gene of ``arch`` (unused layer genes are 0 / the smallest range)."""
        if arch not in self:
            raise ValueError(f"architecture {arch} is not in {self!r}")
        L = self.max_layers
        gene = np.zeros(self.n_genes)
        gene[:4] = [arch.n_qubits, arch.n_layers, self.embeddings.index(arch.embedding),
                    self.rotations.index(arch.rotation)]
        gene[4 + L:4 + 2 * L] = self.ranges[0]
        for i, (e, r) in enumerate(zip(arch.entangler, arch.entangle_range)):
            gene[4 + i] = self.entanglers.index(e)
            # a range clipped to n_qubits - 1 may lie below the space's minimum: decode clips it again
            gene[4 + L + i] = max(r, self.ranges[0]) if e in RANGED_ENTANGLERS else self.ranges[0]
        if self.learning_rates is not None:
            assert arch.learning_rate is not None  # ``arch in self``: a space that searches it gives every one
            gene[-1] = math.log10(arch.learning_rate)
        return gene

    # --- the mixed-variable gene (pymoo) -------------------------------------------------------
    def variable_names(self) -> list[str]:
        """The names of the genes, in the order of the integer gene."""
        L = self.max_layers
        names = ["n_qubits", "n_layers", "embedding", "rotation"]
        names += [f"entangler_{i + 1}" for i in range(L)] + [f"range_{i + 1}" for i in range(L)]
        return names + (["log10_learning_rate"] if self.learning_rates is not None else [])

    def _choices_of(self, name: str) -> tuple[str, ...] | None:
        """The allowed names of a categorical gene (None for a numeric one)."""
        if name == "embedding":
            return self.embeddings
        if name == "rotation":
            return self.rotations
        return self.entanglers if name.startswith("entangler_") else None

    def variables(self) -> dict[str, Variable]:
        """The genes as pymoo variables: ``Integer`` sizes and ranges, ``Choice`` names, ``Real`` log10
        learning rate."""
        low, high = self.gene_bounds
        out: dict[str, Variable] = {}
        for name, lo, hi in zip(self.variable_names(), low, high):
            choices = self._choices_of(name)
            if choices is not None:
                out[name] = Choice(options=list(choices))
            elif name == "log10_learning_rate":
                out[name] = Real(bounds=(float(lo), float(hi)))
            else:
                out[name] = Integer(bounds=(int(lo), int(hi)))
        return out

    def decode_vars(self, gene: Mapping[str, Any]) -> Architecture:
        """The architecture of a mixed-variable gene (numbers are rounded and clipped as in :meth:`decode`)."""
        names = self.variable_names()
        if not isinstance(gene, Mapping) or set(gene) != set(names):
            raise ValueError(f"invalid gene {gene!r}; allowed: a mapping with exactly the keys {', '.join(names)}")
        values: list[float] = []
        for name in names:
            value, choices = gene[name], self._choices_of(name)
            if choices is not None:
                values.append(choices.index(check_choice(name, value, choices)))
            elif is_number(value):
                values.append(float(value))
            else:
                raise InvalidArgument(name, value, "a finite number")
        return self.decode(values)

    def encode_vars(self, arch: Architecture) -> dict[str, Any]:
        """The mixed-variable gene of ``arch`` (plain ``int``/``str``/``float`` values, JSON-ready); genes
        that do not change the architecture get fixed values, so equal architectures have equal genes."""
        out: dict[str, Any] = {}
        for name, value in zip(self.variable_names(), self.encode(arch)):
            choices = self._choices_of(name)
            if choices is not None:
                out[name] = choices[int(value)]
            else:
                out[name] = float(value) if name == "log10_learning_rate" else int(value)
        return out

    # --- members --------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        """A member drawn uniformly gene by gene."""
        low, high = self.gene_bounds
        gene = np.where(self.integer_genes, rng.integers(low.astype(int), high.astype(int) + 1),
                        rng.uniform(low, high))
        return self.decode(gene)

    def _extreme(self, largest: bool, rng: np.random.Generator | None) -> Architecture:
        rng = rng or np.random.default_rng(0)
        arch = self.sample(rng)
        rotation = max(self.rotations, key=lambda r: len(ROTATION_GATES[r]) * (1 if largest else -1))
        n = self.qubits[1] if largest else self.qubits[0]
        layers = self.layers[1] if largest else self.layers[0]
        gene = self.encode(arch)
        gene[:4] = [n, layers, gene[2], self.rotations.index(rotation)]
        return self.decode(gene)

    def largest(self, rng: np.random.Generator | None = None) -> Architecture:
        """Most qubits, most layers and widest rotation (embedding and entanglers drawn by ``rng``)."""
        return self._extreme(True, rng)

    def smallest(self, rng: np.random.Generator | None = None) -> Architecture:
        """Fewest qubits, fewest layers and narrowest rotation (the rest drawn by ``rng``)."""
        return self._extreme(False, rng)
