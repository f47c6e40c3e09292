"""The compiled gates of the statevector engine: kernels on batched states, their inverses and derivatives.

States are stored amplitude-major: shape (2**n, B) for a batch of states, (2**n, M, B) for the
adjoint pass (the states and their K cotangent states side by side), so that permutations are
row gathers, a one-qubit gate with a shared angle is one (2 x 2) @ (2, rest) matmul per block,
and per-sample values (B,) broadcast along the last, contiguous dimension:

* a run of parameter-free permutation gates (X, CX, SWAP, CCX) is one row gather (:class:`_Permutation`);
* a gate whose angle is shared by the batch (weights, constants) is one 2 x 2 matmul; only
  input-dependent angles are per-sample elementwise ops;
* diagonal gates (RZZ, CZ) are elementwise phase products.

Gates read their angles from an :class:`_Angles` table: per column the half-angle cosine and sine,
each a 0-dim tensor (an angle shared by the batch: weights, constants) or of shape (B,)
(input-dependent), and for shared rotation angles the gate's 2 x 2 matrix. A compiled gate offers:

* ``gate(state, angles)``: the gate U (differentiable by autograd, for ``state``);
* ``gate.inverse(state, angles)``: U^dagger;
* ``gate.derivatives(psi, angles)``: [(column, dU/dh psi_before)] for each half-angle column h of
  the gate, given the states psi (2**n, B) after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

Tensor = torch.Tensor

_FIXED: dict[str, list[list[complex]]] = {"x": [[0, 1], [1, 0]], "y": [[0, -1j], [1j, 0]], "z": [[1, 0], [0, -1]],
          "h": [[1 / math.sqrt(2), 1 / math.sqrt(2)], [1 / math.sqrt(2), -1 / math.sqrt(2)]],
          "s": [[1, 0], [0, 1j]], "sdg": [[1, 0], [0, -1j]],
          "t": [[1, 0], [0, np.exp(1j * np.pi / 4)]], "tdg": [[1, 0], [0, np.exp(-1j * np.pi / 4)]],
          "sx": [[0.5 + 0.5j, 0.5 - 0.5j], [0.5 - 0.5j, 0.5 + 0.5j]],
          "sxdg": [[0.5 - 0.5j, 0.5 + 0.5j], [0.5 + 0.5j, 0.5 - 0.5j]]}
_ROTATIONS = {"rx", "ry", "rz", "p"}  # one-qubit gates driven by the half-angle table


def _rotate(name: str, c: Tensor, s: Tensor, a0: Tensor, a1: Tensor) -> tuple[Tensor, Tensor]:
    """RX/RY/RZ/P(theta) on amplitude pairs (a0, a1), given c, s = cos, sin(theta / 2)."""
    if name == "ry":
        return c * a0 - s * a1, s * a0 + c * a1
    if name == "rx":
        js = torch.complex(torch.zeros_like(s), s)
        return c * a0 - js * a1, c * a1 - js * a0
    if name == "rz":
        e = torch.complex(c, -s)
        return e * a0, e.conj() * a1
    e = torch.complex(c, s)  # p: diag(1, e^{i theta}), e^{i theta} = (c + i s)^2
    return a0, e * e * a1


_GENERATORS = {  # d/dh of exp(-i h G) is -i G exp(-i h G); dP(2h)/dh = 2i |1><1| P(2h)
    "ry": torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64),
    "rx": torch.tensor([[0.0, -1j], [-1j, 0.0]], dtype=torch.complex128),
    "rz": torch.tensor([[-1j, 0.0], [0.0, 1j]], dtype=torch.complex128),
    "p": torch.tensor([[0.0, 0.0], [0.0, 2j]], dtype=torch.complex128),
}


@dataclass
class _Angles:
    cos: list
    sin: list
    matrix: list  # per column: the 2 x 2 matrix of a shared rotation angle, else None
    adjoint: list  # and its conjugate transpose


def _rotation_matrices(name: str, c: Tensor, s: Tensor) -> Tensor:
    """The (N, 2, 2) matrices of RX/RY/RZ/P(theta) from c, s = cos, sin(theta / 2) of shape (N,)."""
    if name == "ry":
        return torch.stack((c, -s, s, c), -1).reshape(-1, 2, 2)
    zero = torch.zeros_like(c)
    if name in ("rx", "rz"):
        imag = (zero, -s, -s, zero) if name == "rx" else (-s, zero, zero, s)
        return torch.complex(torch.stack((c, zero, zero, c), -1), torch.stack(imag, -1)).reshape(-1, 2, 2)
    e = torch.complex(c, s)
    one = torch.ones_like(e)
    return torch.stack((one, torch.zeros_like(e), torch.zeros_like(e), e * e), -1).reshape(-1, 2, 2)


def _blocks(state: Tensor, n: int, q: int) -> Tensor:
    """View (2**(n-1-q), 2, rest): the middle index is qubit q (Qiskit's little-endian order)."""
    return state.reshape(2 ** (n - 1 - q), 2, -1)


def _apply_matrix(matrix: Tensor, state: Tensor, n: int, q: int) -> Tensor:
    """A shared one-qubit gate (2 x 2 matrix) on qubit q: one batched matmul, or (many small
    blocks, outside autograd) four in-place elementwise passes."""
    if matrix.dtype != state.dtype:
        matrix = matrix.to(state.dtype)
    blocks = _blocks(state, n, q)
    if (blocks.shape[0] <= 8 or blocks.shape[2] >= 128
            or (torch.is_grad_enabled() and (matrix.requires_grad or state.requires_grad))):
        return torch.matmul(matrix, blocks).reshape(state.shape)
    (m00, m01), (m10, m11) = matrix.tolist()
    out = torch.empty_like(blocks)
    a0, a1, o0, o1 = blocks[:, 0], blocks[:, 1], out[:, 0], out[:, 1]
    torch.mul(a0, m00, out=o0).add_(a1, alpha=m01)
    torch.mul(a0, m10, out=o1).add_(a1, alpha=m11)
    return out.reshape(state.shape)


def _split(state: Tensor, n: int, q: int) -> tuple[Tensor, Tensor]:
    """The amplitudes with qubit q = 0 and = 1, each of shape (hi, lo, ..., B)."""
    view = state.reshape(2 ** (n - 1 - q), 2, 2**q, *state.shape[1:])
    return view[:, 0], view[:, 1]


def _join(a0: Tensor, a1: Tensor, shape) -> Tensor:
    return torch.stack((a0, a1), 1).reshape(shape)


def _adjoint(matrix: Tensor) -> Tensor:
    return matrix.transpose(-1, -2) if not matrix.is_complex() else matrix.transpose(-1, -2).conj()


class _Gate:
    columns: tuple[int, ...] = ()  # angle-table columns, set once the table layout is known
    slots: tuple[int, ...] = ()  # indices of the gate's angles in StatevectorProgram._angles

    def __call__(self, state: Tensor, angles: _Angles) -> Tensor:
        raise NotImplementedError

    def inverse(self, state: Tensor, angles: _Angles) -> Tensor:
        raise NotImplementedError

    def derivatives(self, psi: Tensor, angles: _Angles) -> list[tuple[int, Tensor]]:
        return []


class _Permutation(_Gate):
    """Fused parameter-free permutation gates (X, CX, SWAP, CCX): one row gather."""

    def __init__(self, perm: np.ndarray):
        self.index = torch.tensor(perm, dtype=torch.long)
        self.inverse_index = torch.tensor(np.argsort(perm), dtype=torch.long)

    def __call__(self, state, angles):
        return state.index_select(0, self.index)

    def inverse(self, state, angles):
        return state.index_select(0, self.inverse_index)


class _Rotation(_Gate):
    """RX/RY/RZ/P(theta) on qubit q: a 2 x 2 matmul for a shared angle, else elementwise."""

    def __init__(self, name: str, n: int, q: int, slot: int):
        self.name, self.n, self.q, self.slots = name, n, q, (slot,)

    def _elementwise(self, state, c, s):
        a0, a1 = _split(state, self.n, self.q)
        if self.name == "ry" and not (torch.is_grad_enabled() and (state.requires_grad or c.requires_grad)):
            out = torch.empty_like(state)
            o0, o1 = _split(out, self.n, self.q)
            torch.mul(a0, c, out=o0).addcmul_(a1, s, value=-1)
            torch.mul(a0, s, out=o1).addcmul_(a1, c)
            return out
        return _join(*_rotate(self.name, c, s, a0, a1), state.shape)

    def __call__(self, state, angles):
        k = self.columns[0]
        if angles.matrix[k] is not None:
            return _apply_matrix(angles.matrix[k], state, self.n, self.q)
        return self._elementwise(state, angles.cos[k], angles.sin[k])

    def inverse(self, state, angles):
        k = self.columns[0]
        if angles.adjoint[k] is not None:
            return _apply_matrix(angles.adjoint[k], state, self.n, self.q)
        return self._elementwise(state, angles.cos[k], -angles.sin[k])  # R(theta)^dagger = R(-theta)

    def derivatives(self, psi, angles):
        return [(self.columns[0], _apply_matrix(_GENERATORS[self.name], psi, self.n, self.q))]


class _Fixed(_Gate):
    """A parameter-free one-qubit gate."""

    def __init__(self, matrix, n: int, q: int, dtype):
        m = np.array(matrix, dtype=complex)
        if dtype == torch.float64:
            m = m.real
        self.n, self.q = n, q
        self.matrix = torch.tensor(m, dtype=dtype)
        self.adjoint = _adjoint(self.matrix).resolve_conj().contiguous()

    def __call__(self, state, angles):
        return _apply_matrix(self.matrix, state, self.n, self.q)

    def inverse(self, state, angles):
        return _apply_matrix(self.adjoint, state, self.n, self.q)


class _U(_Gate):
    """U(theta, phi, lambda) = [[c, -e^{i lambda} s], [e^{i phi} s, e^{i (phi + lambda)} c]] with
    c, s = cos, sin(theta / 2); the table holds half of every angle, so e^{i phi} = (cos + i sin)^2."""

    def __init__(self, n: int, q: int, slots: list[int]):
        self.n, self.q, self.slots = n, q, tuple(slots)

    def _phases(self, angles):
        theta, phi, lam = self.columns
        ep, el = (torch.complex(angles.cos[k], angles.sin[k]) ** 2 for k in (phi, lam))
        return angles.cos[theta], angles.sin[theta], ep, el

    def _apply(self, m, state):
        a0, a1 = _split(state, self.n, self.q)  # per-sample (B,) entries broadcast along the last axis
        return _join(m[0][0] * a0 + m[0][1] * a1, m[1][0] * a0 + m[1][1] * a1, state.shape)

    def __call__(self, state, angles):
        c, s, ep, el = self._phases(angles)
        return self._apply([[c, -el * s], [ep * s, ep * el * c]], state)

    def inverse(self, state, angles):
        c, s, ep, el = self._phases(angles)  # the conjugate transpose
        return self._apply([[c, (ep * s).conj()], [(-el * s).conj(), (ep * el * c).conj()]], state)

    def derivatives(self, psi, angles):
        theta, phi, lam = self.columns
        c, s, ep, el = self._phases(angles)
        before = self.inverse(psi, angles)
        b0, b1 = _split(psi, self.n, self.q)
        a0, a1 = _split(before, self.n, self.q)
        d_theta = self._apply([[-s, -el * c], [ep * c, -ep * el * s]], before)  # theta = 2 h_theta
        d_phi = _join(torch.zeros_like(b0), 2j * b1, psi.shape)  # 2i |1><1| U psi_before
        d_lam = self(_join(torch.zeros_like(a0), 2j * a1, psi.shape), angles)  # U 2i |1><1| psi_before
        return [(theta, d_theta), (phi, d_phi), (lam, d_lam)]


class _ZZ(_Gate):
    """RZZ(theta) = exp(-i theta/2 Z Z): a phase c - i s zz per basis state."""

    def __init__(self, zz: np.ndarray, slot: int):
        self.zz, self.slots = torch.tensor(zz, dtype=torch.float64), (slot,)

    def _apply(self, state, c, s):
        middle = [1] * (state.dim() - 2)
        if c.dim() == 0:
            phase = torch.complex(c.expand(self.zz.shape), -s * self.zz).reshape(-1, *middle, 1)
        else:
            phase = torch.complex(c.expand(self.zz.shape[0], -1), -self.zz.unsqueeze(1) * s)
            phase = phase.reshape(phase.shape[0], *middle, phase.shape[1])
        return state * phase

    def __call__(self, state, angles):
        k = self.columns[0]
        return self._apply(state, angles.cos[k], angles.sin[k])

    def inverse(self, state, angles):
        k = self.columns[0]
        return self._apply(state, angles.cos[k], -angles.sin[k])

    def derivatives(self, psi, angles):  # d/dh exp(-i h ZZ) = -i ZZ exp(-i h ZZ)
        return [(self.columns[0], -1j * self.zz.unsqueeze(-1) * psi)]


class _Sign(_Gate):
    """A diagonal +-1 gate (CZ): its own inverse."""

    def __init__(self, sign: np.ndarray, dtype):
        self.sign = torch.tensor(sign, dtype=dtype)

    def __call__(self, state, angles):
        return state * self.sign.reshape(-1, *([1] * (state.dim() - 1)))

    inverse = __call__


class _Controlled(_Gate):
    """A one-qubit gate on the target where the control qubit is 1."""

    def __init__(self, target: _Gate, mask: np.ndarray):
        self.target, self.mask, self.slots = target, torch.tensor(mask, dtype=torch.bool), target.slots

    def _mask(self, state):
        return self.mask.reshape(-1, *([1] * (state.dim() - 1)))

    def __call__(self, state, angles):
        return torch.where(self._mask(state), self.target(state, angles), state)

    def inverse(self, state, angles):
        return torch.where(self._mask(state), self.target.inverse(state, angles), state)

    def derivatives(self, psi, angles):
        return [(k, torch.where(self._mask(v), v, torch.zeros((), dtype=v.dtype)))
                for k, v in self.target.derivatives(psi, angles)]
