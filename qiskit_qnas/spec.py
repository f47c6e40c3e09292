"""What an architecture is, as a value: the gene vocabularies and :class:`ArchitectureSpec`.

Near the bottom of the package (it uses the argument checks of :mod:`qiskit_qnas.validation` alone):
nothing here knows about circuits, engines or models. An
``ArchitectureSpec`` holds every field of an architecture, validates it, and gives its identity
(ordering, ``key`` / ``from_key``, ``to_dict`` / ``from_dict``) and sizes. The public
:class:`~qiskit_qnas.space.Architecture` is this value plus its Qiskit and torch views; modules below
:mod:`qiskit_qnas.space` take an ``ArchitectureSpec`` (so every ``Architecture`` too), modules above
it take the ``Architecture``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .validation import InvalidArgument, check_choice, check_int, check_positive

EMBEDDINGS = ("angle_x", "angle_y", "angle_z", "amplitude", "zz", "dense")
#: what a :class:`~qiskit_qnas.space.SearchSpace` searches unless told otherwise (``dense``, made for
#: ``hidden=None`` on more features than qubits, is asked for by name)
DEFAULT_EMBEDDINGS = ("angle_x", "angle_y", "angle_z", "amplitude", "zz")
#: the rotations of the ``dense`` embedding, in circuit order: input ``k * n + i`` on qubit ``i`` (QuantumNAS's
#: "4x4_ryzxy" encoder of 16 pooled pixels on 4 qubits)
DENSE_ROTATIONS = ("ry", "rz", "rx", "ry")
ROTATIONS = ("ry", "rxry", "rxryrz")
ENTANGLERS = ("none", "odd", "even", "all", "chain", "full")
#: entanglers whose CNOT pairs depend on the entanglement range r
RANGED_ENTANGLERS = ("odd", "even", "all")
#: rotation gates of each trainable block, in circuit order
ROTATION_GATES = {"ry": ("ry",), "rxry": ("rx", "ry"), "rxryrz": ("rx", "ry", "rz")}
#: widest amplitude embedding accepted (2**n features; beyond this the state preparation explodes)
MAX_AMPLITUDE_QUBITS = 12
#: widest architecture: the widest IBM QPU (156 qubits, Heron r2); wider ones only run cut into pieces
MAX_QUBITS = 156
#: deepest architecture (far beyond what trains or survives a device's noise; it bounds what a received
#: run directory can make the library build)
MAX_LAYERS = 100


#: the class of the value built by ``from_key`` / ``from_dict``: the subclass they are called on
_Spec = TypeVar("_Spec", bound="ArchitectureSpec")


@functools.total_ordering
@dataclass(frozen=True, eq=True)
class ArchitectureSpec:
    """The fields of an architecture, validated on construction, with its identity and sizes.

    The value without its Qiskit and torch views: :class:`~qiskit_qnas.space.Architecture` adds them
    and documents what every field means.
    """

    n_qubits: int
    n_layers: int
    embedding: str = "angle_y"
    rotation: str = "ry"
    # stored one per layer: __post_init__ turns a single value into a tuple
    entangler: tuple[str, ...] = "chain"  # type: ignore[assignment]  # the default is the single value
    entangle_range: tuple[int, ...] = 1  # type: ignore[assignment]  # the default is the single value
    learning_rate: float | None = None

    if TYPE_CHECKING:
        # what the constructor accepts: one value for every layer, or one per layer
        def __init__(self, n_qubits: int, n_layers: int, embedding: str = "angle_y", rotation: str = "ry",
                     entangler: tuple[str, ...] | str = "chain", entangle_range: tuple[int, ...] | int = 1,
                     learning_rate: float | None = None) -> None: ...

    def __post_init__(self) -> None:
        n = check_int("n_qubits", self.n_qubits, 1, MAX_QUBITS)
        layers = check_int("n_layers", self.n_layers, 1, MAX_LAYERS)
        embedding = check_choice("embedding", self.embedding, EMBEDDINGS)
        if embedding == "amplitude" and n > MAX_AMPLITUDE_QUBITS:
            raise InvalidArgument("n_qubits", n, f"at most {MAX_AMPLITUDE_QUBITS} with the amplitude embedding")
        check_choice("rotation", self.rotation, ROTATIONS)
        entanglers = self._per_layer("entangler", self.entangler, layers)
        entanglers = tuple(check_choice("entangler", e, ENTANGLERS) for e in entanglers)
        ranges = self._per_layer("entangle_range", self.entangle_range, layers)
        # every range is an integer >= 1; only the ranged entanglers use (and bound) it
        ranges = tuple(check_int("entangle_range", r, 1, max(1, n - 1) if e in RANGED_ENTANGLERS else None)
                       for e, r in zip(entanglers, ranges))
        ranges = tuple(r if e in RANGED_ENTANGLERS else 1 for e, r in zip(entanglers, ranges))
        lr = check_positive("learning_rate", self.learning_rate, allow_none=True,
                            allowed="None or a positive finite float")
        for name, value in [("n_qubits", n), ("n_layers", layers), ("entangler", entanglers),
                            ("entangle_range", ranges), ("learning_rate", lr)]:
            object.__setattr__(self, name, value)

    @staticmethod
    def _per_layer(field: str, value: Any, n_layers: int) -> tuple:
        if isinstance(value, (str, int, float, np.integer)):
            return (value,) * n_layers
        try:
            values = tuple(value)
        except TypeError:
            raise InvalidArgument(field, value, f"one value, or one per layer ({n_layers})") from None
        if len(values) != n_layers:
            raise InvalidArgument(field, value, f"one value, or one per layer ({n_layers})")
        return values

    # --- identity -----------------------------------------------------------------------------
    def _sort_key(self) -> tuple:
        return (self.n_qubits, self.n_layers, EMBEDDINGS.index(self.embedding),
                ROTATIONS.index(self.rotation), tuple(ENTANGLERS.index(e) for e in self.entangler),
                self.entangle_range, -1.0 if self.learning_rate is None else self.learning_rate)

    def __lt__(self, other: ArchitectureSpec) -> bool:
        if not isinstance(other, ArchitectureSpec):
            return NotImplemented
        return self._sort_key() < other._sort_key()

    @property
    def key(self) -> str:
        """Stable short string, e.g. ``q4-l2-angle_y-ry-odd1.even1`` (``-lr0.01`` when searched)."""
        layers = ".".join(f"{e}{r}" for e, r in zip(self.entangler, self.entangle_range))
        key = f"q{self.n_qubits}-l{self.n_layers}-{self.embedding}-{self.rotation}-{layers}"
        return key if self.learning_rate is None else f"{key}-lr{self.learning_rate!r}"

    _KEY = re.compile(r"^q(\d+)-l(\d+)-([a-z_]+)-([a-z]+)-([a-z0-9.]+?)(?:-lr(.+))?$")

    @classmethod
    def from_key(cls: type[_Spec], key: str) -> _Spec:
        match = cls._KEY.match(key)
        if not match:
            raise ValueError(f"invalid architecture key {key!r}; expected e.g. 'q4-l2-angle_y-ry-odd1.even1'")
        n, layers, embedding, rotation, ents, lr = match.groups()
        parts = ents.split(".")
        pairs = [pair for pair in (re.match(r"^([a-z]+)(\d+)$", part) for part in parts) if pair]
        if len(pairs) != len(parts):
            raise ValueError(f"invalid architecture key {key!r}: bad entangler part {ents!r}")
        return cls(int(n), int(layers), embedding, rotation, tuple(p.group(1) for p in pairs),
                   tuple(int(p.group(2)) for p in pairs), None if lr is None else float(lr))

    def __str__(self) -> str:
        return self.key

    def to_dict(self) -> dict[str, Any]:
        return {"n_qubits": self.n_qubits, "n_layers": self.n_layers, "embedding": self.embedding,
                "rotation": self.rotation, "entangler": list(self.entangler),
                "entangle_range": list(self.entangle_range), "learning_rate": self.learning_rate}

    @classmethod
    def from_dict(cls: type[_Spec], data: dict[str, Any]) -> _Spec:
        data = dict(data)
        for field in ("entangler", "entangle_range"):
            if isinstance(data.get(field), list):
                data[field] = tuple(data[field])
        return cls(**data)

    # --- sizes --------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        """Number of classical values the embedding takes (what the model's pre-layer produces)."""
        return embedding_width(self.embedding, self.n_qubits)

    @property
    def n_inputs(self) -> int:
        """Number of circuit input parameters (amplitude: 2**n - 1 RY-tree angles)."""
        return 2**self.n_qubits - 1 if self.embedding == "amplitude" else self.n_features

    @property
    def n_weights(self) -> int:
        return self.n_layers * self.n_qubits * len(ROTATION_GATES[self.rotation])


def embedding_width(embedding: str, n_qubits: int) -> int:
    """How many classical values ``embedding`` takes on ``n_qubits`` qubits: ``2**n`` amplitudes, one
    angle per rotation of ``dense`` (``4 n``), one per qubit otherwise."""
    if embedding == "amplitude":
        return 2**n_qubits
    return len(DENSE_ROTATIONS) * n_qubits if embedding == "dense" else n_qubits
