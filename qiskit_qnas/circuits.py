"""An architecture's quantum layer in Qiskit: its ``QuantumCircuit`` (embeddings, rotation blocks and
entanglers), the ``<Z_i>`` observables it outputs, and the ``NeuralNetwork`` that runs them (:func:`make_qnn`).

Every circuit uses only gates in IBM's basis after transpilation (h, rx, ry, rz, rzz, cx), and the
amplitude embedding is a tree of uniformly controlled RY rotations (no opaque ``initialize``), so
that the same circuit is simulated exactly, transpiled for hardware and cut.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from qiskit.circuit import Parameter, ParameterExpression, ParameterVector, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from .engines import circuit_qnn
from .engines.statevector import RYTreePreparation, StatevectorProgram
from .spec import DENSE_ROTATIONS, ROTATION_GATES, ArchitectureSpec


@dataclass(frozen=True)
class BuiltCircuit:
    circuit: QuantumCircuit
    inputs: ParameterVector
    weights: ParameterVector
    #: the amplitude embedding's RY tree, declared to the statevector engine (None for other embeddings)
    preparation: RYTreePreparation | None = None


def entangler_pairs(kind: str, n_qubits: int, r: int = 1) -> list[tuple[int, int]]:
    """The (control, target) CNOT pairs of one entangling layer, in circuit order."""
    n = n_qubits
    if n < 2 or kind == "none":
        return []
    if kind == "chain":
        return [(i, i + 1) for i in range(n - 1)]
    if kind == "full":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    ring = [(i, (i + r) % n) for i in range(n)]
    if kind == "all":
        return ring
    if kind == "odd":
        return ring[1::2]
    if kind == "even":
        return ring[0::2]
    raise ValueError(f"invalid entangler={kind!r}")


def z_observables(n_qubits: int) -> list[SparsePauliOp]:
    """``Z_i`` on each qubit i, in qubit order (the QNN outputs)."""
    return [SparsePauliOp.from_sparse_list([("Z", [i], 1.0)], n_qubits) for i in range(n_qubits)]


def _multiplexor_signs(m: int) -> tuple[np.ndarray, list[list[int]]]:
    """Unrolled CNOT decomposition of a uniformly controlled RY with ``m`` controls.

    Recursively, with c the last control, RY(a) CX(c,t) RY(b) CX(c,t) gives a + b when c = 0 and
    a - b when c = 1 (X RY(b) X = RY(-b)), so a = (a0 + a1)/2, b = (a0 - a1)/2 multiplex over the
    other controls. Unrolled, the k-th RY angle is a signed sum of the 2**m multiplexed angles
    divided by 2**m (a Walsh-Hadamard row). Returns ``signs`` (2**m, 2**m) of +-1 (row k: the k-th
    RY) and, per RY, the controls (indices into the ``m`` controls) of the CXs that follow it.
    """
    def unroll(rows: np.ndarray, depth: int) -> tuple[list[np.ndarray], list[list[int]]]:
        if depth == 0:
            return [rows[0]], [[]]
        half = len(rows) // 2
        low, high = rows[:half], rows[half:]
        first, cx_first = unroll(low + high, depth - 1)
        second, cx_second = unroll(low - high, depth - 1)
        cx_first[-1] = cx_first[-1] + [depth - 1]
        cx_second[-1] = cx_second[-1] + [depth - 1]
        return first + second, cx_first + cx_second

    signs, cxs = unroll(np.eye(2**m, dtype=np.int64), m)
    return np.array(signs), cxs


def _uniformly_controlled_ry(qc: QuantumCircuit, angles: list, controls: list[int], target: int) -> None:
    """RY(angles[k]) on ``target`` when the ``controls`` (little-endian) hold the integer k.

    The recursive CNOT decomposition of :func:`_multiplexor_signs` (2**m RY gates for m controls).
    Every RY angle is built as one flat expression ``(+-a_0 +- a_1 ...) * 2**-m``, parsed in one
    call: composing the recursive half-sums as nested expressions took tens of seconds from 7
    qubits on. Compiled simulators see an affine function of the inputs.
    """
    m = len(controls)
    if m == 0:
        qc.ry(angles[0], target)
        return
    if not all(isinstance(a, Parameter) for a in angles) or len({a.name for a in angles}) != len(angles):
        raise ValueError("uniformly controlled RY angles must be Parameters with distinct names")
    names = {a.name: a for a in angles}
    scale = 1.0 / 2**m  # a power of two: the coefficients are exact
    signs, cxs = _multiplexor_signs(m)
    for row, cx_controls in zip(signs, cxs):
        terms = "".join(("+" if s > 0 else "-") + a.name for s, a in zip(row, angles))
        qc.ry(ParameterExpression(names, terms) * scale, target)
        for c in cx_controls:
            qc.cx(controls[c], target)


def _embed(qc: QuantumCircuit, arch: ArchitectureSpec, x: ParameterVector) -> None:
    n = arch.n_qubits
    if arch.embedding == "angle_x":
        for i in range(n):
            qc.rx(x[i], i)
    elif arch.embedding == "angle_y":
        for i in range(n):
            qc.ry(x[i], i)
    elif arch.embedding == "angle_z":
        for i in range(n):
            qc.h(i)
            qc.rz(x[i], i)
    elif arch.embedding == "zz":
        for i in range(n):
            qc.h(i)
            qc.rz(2 * x[i], i)
        for i in range(n - 1):
            qc.rzz(2 * (np.pi - x[i]) * (np.pi - x[i + 1]), i, i + 1)
    elif arch.embedding == "dense":
        for k, gate in enumerate(DENSE_ROTATIONS):
            for i in range(n):
                getattr(qc, gate)(x[k * n + i], i)
    elif arch.embedding == "amplitude":
        # Level k prepares qubit n-1-k conditioned on the k more significant qubits; its 2**k
        # angles are inputs x[2**k - 1 : 2**(k+1) - 1] (see amplitude_angles).
        for k in range(n):
            target = n - 1 - k
            angles = [x[2**k - 1 + j] for j in range(2**k)]
            _uniformly_controlled_ry(qc, angles, list(range(target + 1, n)), target)
    else:  # pragma: no cover - ArchitectureSpec validates
        raise ValueError(arch.embedding)


@functools.lru_cache(maxsize=512)
def build_circuit(arch: ArchitectureSpec) -> BuiltCircuit:
    """The circuit of ``arch`` (cached: parameters are the same objects on every call)."""
    n = arch.n_qubits
    x = ParameterVector("x", arch.n_inputs)
    w = ParameterVector("w", arch.n_weights)
    qc = QuantumCircuit(n, name=f"qnas_{arch.key}")
    _embed(qc, arch, x)
    # the tree's node (level k, branch j) is input 2**k - 1 + j, as _embed places them
    preparation = (RYTreePreparation(len(qc.data), tuple(range(arch.n_inputs)))
                   if arch.embedding == "amplitude" else None)
    gates = ROTATION_GATES[arch.rotation]
    k = 0
    for layer in range(arch.n_layers):
        for q in range(n):
            for gate in gates:
                getattr(qc, gate)(w[k], q)
                k += 1
        for c, t in entangler_pairs(arch.entangler[layer], n, arch.entangle_range[layer]):
            qc.cx(c, t)
    return BuiltCircuit(qc, x, w, preparation)


def make_qnn(arch: ArchitectureSpec, engine: str = "statevector", estimator=None, input_gradients: bool = False,
             **kwargs):
    """The quantum layer of ``arch`` as a qiskit-machine-learning ``NeuralNetwork`` (outputs ``<Z_i>``)."""
    built = build_circuit(arch)
    return circuit_qnn(built.circuit, built.inputs, built.weights, z_observables(arch.n_qubits), engine=engine,
                       estimator=estimator, input_gradients=input_gradients, preparation=built.preparation, **kwargs)


#: gate slot of each rotation gate in a SuperCircuit's (layer, qubit, slot) weight table
WEIGHT_SLOTS = {"rx": 0, "ry": 1, "rz": 2}


def weight_slots(arch: ArchitectureSpec) -> list[tuple[int, int, int]]:
    """(layer, qubit, gate slot) of each circuit weight, gate slot 0/1/2 = rx/ry/rz.

    A SuperCircuit stores one weight per (layer, qubit, slot); a candidate's weight k is the shared
    weight at ``weight_slots(arch)[k]``, so an RY weight on qubit 2 of layer 1 is the same number
    whichever rotation block, embedding or entangler the candidate has.
    """
    return [(layer, q, WEIGHT_SLOTS[g]) for layer in range(arch.n_layers) for q in range(arch.n_qubits)
            for g in ROTATION_GATES[arch.rotation]]


def _norm(squares: torch.Tensor, eps: float) -> torch.Tensor:
    """sqrt(squares), exactly 0 (with gradient 0, not inf) at or below ``eps``."""
    zero = squares <= eps
    safe = torch.where(zero, torch.ones_like(squares), squares)
    return torch.where(zero, torch.zeros_like(squares), torch.sqrt(safe))


def amplitude_angles(features: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Map real features ``(..., 2**n)`` to the ``2**n - 1`` RY-tree angles of the amplitude embedding.

    The prepared state is ``features / ||features||`` (signs included, exactly, also when some blocks
    of features are zero), amplitude index in Qiskit's little-endian order. Differentiable, so a
    model's pre-layer can learn the amplitudes; blocks whose squared norm is at most ``eps`` count
    as zero, and their angles get zero gradients (a zero block's angle is arbitrary).
    """
    dim = features.shape[-1]
    n = dim.bit_length() - 1
    if dim != 2**n or n < 1:
        raise ValueError(f"amplitude embedding needs 2**n features (n >= 1), got {dim}")
    angles = []
    for k in range(n):
        # blocks of the amplitude vector that share the k most significant bits
        blocks = features.reshape(*features.shape[:-1], 2**k, 2, 2 ** (n - k - 1))
        if k == n - 1:
            lo, hi = blocks[..., 0, 0], blocks[..., 1, 0]
        else:
            lo = _norm((blocks[..., 0, :] ** 2).sum(-1), eps)
            hi = _norm((blocks[..., 1, :] ** 2).sum(-1), eps)
        both = (lo == 0) & (hi == 0)  # atan2(0, 0) = 0, but its gradient would be nan
        angles.append(2 * torch.atan2(torch.where(both, torch.zeros_like(hi), hi),
                                      torch.where(both, torch.ones_like(lo), lo)))
    return torch.cat(angles, dim=-1)


@functools.lru_cache(maxsize=1024)
def compiled_program(arch: ArchitectureSpec) -> StatevectorProgram:
    """The exact torch program of ``arch``'s circuit, ``<Z_i>`` of every qubit out, the amplitude
    embedding's RY tree started from its closed form; compiled once per architecture and process
    (the SuperCircuit's training and fine-tuning and the exact target's evaluations share it)."""
    built = build_circuit(arch)
    return StatevectorProgram(built.circuit, built.inputs, built.weights, preparation=built.preparation)
