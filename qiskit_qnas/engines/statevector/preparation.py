"""The amplitude embedding's state preparation declared as data, and its closed-form state.

A circuit builder declares its leading instructions to be a binary tree of uniformly controlled RY
rotations (:class:`RYTreePreparation`, the amplitude embedding); the engine then starts every sweep
from the tree's closed-form state instead of simulating its gates (2**n - 1 per-sample RY and
2**(n+1) - 2n - 2 CX at n qubits), and differentiates through that closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit

Tensor = torch.Tensor


@dataclass(frozen=True)
class RYTreePreparation:
    """The leading ``n_instructions`` instructions of a circuit prepare, from ``|0...0>``, the state of
    a binary tree of uniformly controlled RY rotations over all n qubits (the amplitude embedding).

    Level k = 0..n-1 of the tree rotates qubit n-1-k by RY(theta_kj), where j is the integer held by
    qubits n-k..n-1 (qubit n-k its least significant bit) and theta_kj is the circuit input
    ``node_inputs[2**k - 1 + j]``. The amplitude of basis state b is therefore, exactly and with its
    sign, the product over the levels k of cos(theta_kj / 2) (bit n-1-k of b is 0) or sin(theta_kj / 2)
    (bit 1), with j = b >> (n - k): the engine computes that product instead of the instructions,
    whatever gates they decompose the tree into (the circuit builder vouches for them).
    """

    n_instructions: int
    node_inputs: tuple[int, ...]


def _tree_node_inputs(preparation: RYTreePreparation | None, circuit: QuantumCircuit,
                      inputs: list[Parameter]) -> Tensor | None:
    """The tree's node inputs as an index tensor (None without a preparation), once the
    declaration fits the circuit: the right number of nodes, indices of inputs, and no other
    parameter in the instructions it replaces."""
    if preparation is None:
        return None
    if not isinstance(preparation, RYTreePreparation):
        raise ValueError(f"invalid preparation={preparation!r}; allowed: None or an RYTreePreparation")
    dim = 2**circuit.num_qubits
    count = preparation.n_instructions
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= len(circuit.data):
        raise ValueError(f"invalid preparation.n_instructions={count!r}; allowed: an integer in "
                         f"0..{len(circuit.data)} (the circuit's instructions)")
    nodes = tuple(preparation.node_inputs)
    if len(nodes) != dim - 1 or not all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < len(inputs) for i in nodes):
        raise ValueError(f"invalid preparation.node_inputs: allowed: {dim - 1} (2**n - 1 for n = "
                         f"{circuit.num_qubits} qubits) indices in 0..{len(inputs) - 1} of the circuit inputs")
    allowed = {inputs[i] for i in nodes}
    for instruction in circuit.data[:count]:
        for value in instruction.operation.params:
            stray = (value.parameters if isinstance(value, ParameterExpression) else set()) - allowed
            if stray:
                raise ValueError(f"the prepared instructions depend on {sorted(p.name for p in stray)}, "
                                 "which are not preparation.node_inputs")
    return torch.tensor(nodes, dtype=torch.long)


def _tree_levels(x: Tensor, node_inputs: Tensor, n_qubits: int) -> tuple[list[Tensor], Tensor, Tensor]:
    """The RY tree's states before each level, (2**k, B) for k = 0..n-1 (index j: the k prepared
    qubits), and the half-angle cosines and sines of its nodes, (2**n - 1, B)."""
    half = 0.5 * x.index_select(1, node_inputs).T
    cos, sin = torch.cos(half), torch.sin(half)
    levels = [torch.ones(1, x.shape[0], dtype=torch.float64)]
    for k in range(n_qubits - 1):
        nodes = slice(2**k - 1, 2 ** (k + 1) - 1)
        # the new qubit is the next less significant bit: index j -> 2j (cos) and 2j + 1 (sin)
        levels.append(torch.stack((levels[-1] * cos[nodes], levels[-1] * sin[nodes]), 1).reshape(2 ** (k + 1), -1))
    return levels, cos, sin


def _tree_state(x: Tensor, node_inputs: Tensor, n_qubits: int) -> Tensor:
    """The closed-form state of the RY tree, (2**n, B), differentiable by autograd."""
    levels, cos, sin = _tree_levels(x, node_inputs, n_qubits)
    dim = 2**n_qubits
    nodes = slice(dim // 2 - 1, dim - 1)
    return torch.stack((levels[-1] * cos[nodes], levels[-1] * sin[nodes]), 1).reshape(dim, -1)


def _tree_vjp(x: Tensor, node_inputs: Tensor, n_qubits: int, cotangents: Tensor) -> Tensor:
    """sum_b cotangents[b] d psi_tree[b] / dx for real cotangent states (2**n, M, B) of the tree's
    state: (B, M, n_inputs), by reverse-mode through the levels (no division by amplitudes, so
    exact where some are zero)."""
    levels, cos, sin = _tree_levels(x, node_inputs, n_qubits)
    grad_half = torch.empty(2**n_qubits - 1, *cotangents.shape[1:], dtype=torch.float64)
    g = cotangents
    for k in range(n_qubits - 1, -1, -1):
        nodes = slice(2**k - 1, 2 ** (k + 1) - 1)
        g = g.reshape(2**k, 2, *cotangents.shape[1:])
        c, s = cos[nodes].unsqueeze(1), sin[nodes].unsqueeze(1)  # (2**k, 1, B)
        before = levels[k].unsqueeze(1)
        # psi[2j] = before[j] cos h_kj, psi[2j + 1] = before[j] sin h_kj
        grad_half[nodes] = before * (g[:, 1] * c - g[:, 0] * s)
        g = g[:, 0] * c + g[:, 1] * s
    dx = torch.zeros(x.shape[0], cotangents.shape[1], x.shape[1], dtype=torch.float64)
    return dx.index_add_(2, node_inputs, 0.5 * grad_half.permute(2, 1, 0))


__all__ = ["RYTreePreparation"]
