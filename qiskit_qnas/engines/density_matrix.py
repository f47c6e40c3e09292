"""An exact, batched, differentiable density-matrix simulator in torch for circuits with error channels.

What noise-adaptive training needs is the loss of the *averaged* noisy channel, which is what a
noisy target measures: ``<Z_i>`` of the density matrix the circuit and its error channels produce.
For the few physical qubits of a candidate's ISA circuit (a 4 x 4 ... 64 x 64 matrix per sample) this
is one pass of small tensor ops, with no sampling variance, where Pauli trajectories need many
statevector runs per sample for the same precision.

The density matrix of a batch is a tensor of shape ``(B, 2, ..., 2, 2, ..., 2)``: the batch, then
the row bits, then the column bits, both from the most significant qubit (``n - 1``) down to qubit
0 (Qiskit's little-endian order, so a reshape to ``(B, 2**n, 2**n)`` is the matrix). Operations:

* a parameter-free gate ``U`` on qubits ``S`` (SX, X, CX, ECR, CZ, ...): ``rho -> U rho U^dagger`` as
  one contraction of its superoperator ``U (x) U^*`` with the row and column bits of ``S``; a
  parametrised one-qubit rotation (RX, RY, U): its matrix on the row bits, its conjugate on the
  column bits; a parametrised diagonal gate (RZ, P, RZZ): one elementwise phase product
  ``exp(i theta (g(r) - g(c)))``;
* a channel after a gate (a depolarising channel of parameter ``lambda`` on the gate's ``k`` qubits
  ``S``, ``rho -> (1 - lambda) rho + lambda (I_S / 2**k) (x) Tr_S(rho)``, or any channel Qiskit's
  ``SuperOp`` takes, such as an Aer noise model's ``QuantumError``) is fused with its gate into one
  superoperator on the row and column bits of ``S``: one contraction.

Gate angles are the circuit's parameter expressions of the inputs ``x`` and weights ``w`` (as in
:class:`~qiskit_qnas.engines.StatevectorProgram`); everything is differentiable by autograd.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.quantum_info import Operator, SparsePauliOp, SuperOp

from .statevector.expressions import _AffineReader, _Angle

Tensor = torch.Tensor

_SKIPPED = {"barrier", "id", "delay"}
#: one-parameter diagonal gates: diag(exp(i theta g(k))) with g given per basis state by _phase_generator
_DIAGONAL = {"rz", "p", "rzz"}
#: one-qubit rotations built as 2 x 2 matrices from their angle
_ROTATIONS = {"rx", "ry"}
#: the widest circuit simulated: a 64 x 64 complex matrix per sample (4**6 * 16 bytes = 64 kB)
MAX_QUBITS = 6


#: the batch axis's letter in every einsum string (the first of the state's letters)
_BATCH = string.ascii_letters[0]


def _letters(count: int, skip: str = "") -> list[str]:
    return [c for c in string.ascii_letters if c not in skip][:count]


def _channel_superoperator(channel, n_qubits: int) -> np.ndarray | None:
    """A channel on ``n_qubits`` as a matrix on row-major vec(rho) (index ``r * d + c``); None for none.

    A float ``lambda`` is ``depolarizing_error(lambda, k)``: ``(1 - lambda) I + (lambda / d) vec(I)
    vec(I)^T`` (``vec(I)^T vec(rho)`` is the trace). Anything else goes through Qiskit's ``SuperOp``,
    whose column-stacking convention (index ``c * d + r``) is transposed to row-major here.
    """
    d = 2**n_qubits
    if isinstance(channel, (int, float, np.floating)):
        lam = float(channel)
        if lam <= 0:
            return None
        eye = np.eye(d).reshape(-1)
        return (1.0 - lam) * np.eye(d * d) + (lam / d) * np.outer(eye, eye)
    if hasattr(channel, "to_quantumchannel"):  # qiskit_aer.noise.QuantumError
        channel = channel.to_quantumchannel()
    superoperator = SuperOp(channel)
    if superoperator.dim != (d, d):
        raise ValueError(f"channels: a channel on {superoperator.num_qubits} qubits after a {n_qubits}-qubit gate")
    column_stacked = superoperator.data.reshape(d, d, d, d)  # [c', r', c, r]
    return column_stacked.transpose(1, 0, 3, 2).reshape(d * d, d * d)


class DensityMatrixProgram:
    """A circuit of unitary gates and error channels, compiled to batched torch operations.

    Args:
        circuit: the unitary circuit (no measurements); every parameter is one of ``inputs`` or ``weights``.
        inputs, weights: the ordered circuit parameters fed from ``x`` and ``w``.
        channels: ``{instruction index: channel}``: after instruction ``k`` of ``circuit.data``, a
            channel on that instruction's qubits: a float ``lambda`` (a depolarising channel of that
            parameter) or any quantum channel ``qiskit.quantum_info.SuperOp`` accepts (a
            ``qiskit_aer.noise.QuantumError``, e.g. thermal relaxation, a ``Kraus``, ...).
        observables: diagonal (I/Z) ``SparsePauliOp``s; default ``Z_i`` for every qubit i.
    """

    def __init__(self, circuit: QuantumCircuit, inputs: Sequence[Parameter], weights: Sequence[Parameter],
                 channels: Mapping[int, object] | None = None, observables: Sequence[SparsePauliOp] | None = None):
        n = circuit.num_qubits
        if n > MAX_QUBITS:
            raise ValueError(f"the density-matrix engine simulates at most {MAX_QUBITS} qubits, got {n}")
        if any(i.operation.name == "measure" for i in circuit.data):
            raise ValueError("the density-matrix engine takes circuits without measurements")
        channels = dict(channels or {})
        if any(not 0 <= int(k) < len(circuit.data) for k in channels):
            raise ValueError("channels: every key must be an instruction index of the circuit")
        self.n_qubits, self.dim = n, 2**n
        self.n_inputs, self.n_weights = len(inputs), len(weights)
        input_index = {p: i for i, p in enumerate(inputs)}
        weight_index = {p: i for i, p in enumerate(weights)}
        reader = _AffineReader(input_index, weight_index)
        basis = np.arange(self.dim)
        self._bits = [(basis >> q) & 1 for q in range(n)]
        self._ops: list[tuple] = []
        for k, instruction in enumerate(circuit.data):
            op = instruction.operation
            qubits = [circuit.find_bit(q).index for q in instruction.qubits]
            channel = _channel_superoperator(channels.get(k, 0.0), len(qubits))
            if op.name in _SKIPPED:
                if channel is not None:
                    self._ops.append(("superop", self._superoperator(np.eye(2 ** len(qubits)), channel),
                                      self._superoperator_spec(qubits)))
                continue
            if op.name in _DIAGONAL or op.name in _ROTATIONS or op.name in ("u", "u3"):
                angles = [_Angle(p, input_index, weight_index, reader) for p in op.params]
                if op.name in _DIAGONAL:
                    self._ops.append(("phase", angles[0], torch.as_tensor(self._phase_generator(op.name, qubits))))
                else:
                    self._ops.append(("rotation", op.name, angles, self._unitary_spec(qubits)))
                if channel is not None:  # the channel after a parametrised gate: a superoperator of its own
                    self._ops.append(("superop", self._superoperator(np.eye(2 ** len(qubits)), channel),
                                      self._superoperator_spec(qubits)))
            elif op.params:
                raise NotImplementedError(f"the density-matrix engine cannot simulate gate {op.name!r}")
            else:  # any parameter-free gate (SX, X, CX, ECR, CZ, H, ...), fused with its channel
                self._ops.append(("superop", self._superoperator(Operator(op).data, channel),
                                  self._superoperator_spec(qubits)))
        observables = observables if observables is not None else [
            SparsePauliOp.from_sparse_list([("Z", [i], 1.0)], n) for i in range(n)]
        self.n_outputs = len(observables)
        self._eigen = torch.tensor(np.stack([self._diagonal(o) for o in observables], axis=1), dtype=torch.float64)

    # --- compilation -------------------------------------------------------------------------
    def _axis(self, q: int, column: bool) -> int:
        """Axis of qubit q's row (or column) bit in the (B, rows..., columns...) tensor."""
        return 1 + (self.n_qubits - 1 - q) + (self.n_qubits if column else 0)

    def _unitary_spec(self, qubits: list[int]) -> tuple[str, str]:
        """einsum strings of U on the row bits and U^* on the column bits of ``qubits``."""
        n, k = self.n_qubits, len(qubits)
        state = _letters(1 + 2 * n)
        new = _letters(k, skip="".join(state))
        rows, columns = list(state), list(state)
        for j, q in enumerate(qubits):  # matrix axes: outputs (qubits[k-1] ... qubits[0]), then inputs
            rows[self._axis(q, False)] = new[j]
            columns[self._axis(q, True)] = new[j]

        def spec(out: list[str], side: bool) -> str:
            outs = "".join(out[self._axis(q, side)] for q in reversed(qubits))
            ins = "".join(state[self._axis(q, side)] for q in reversed(qubits))
            return f"{outs}{ins},{''.join(state)}->{''.join(out)}"

        return spec(rows, False), spec(columns, True)

    def _superoperator_spec(self, qubits: list[int]) -> str:
        """einsum string of a superoperator (axes: output rows, output columns, input rows, input
        columns of ``qubits``, each from ``qubits[-1]`` down to ``qubits[0]``) applied to rho."""
        n = self.n_qubits
        state = _letters(1 + 2 * n)
        new = _letters(2 * len(qubits), skip="".join(state))
        out = list(state)
        for j, q in enumerate(qubits):
            out[self._axis(q, False)], out[self._axis(q, True)] = new[2 * j], new[2 * j + 1]

        def axes(letters, column):
            return "".join(letters[self._axis(q, column)] for q in reversed(qubits))

        operator = axes(out, False) + axes(out, True) + axes(state, False) + axes(state, True)
        return f"{operator},{''.join(state)}->{''.join(out)}"

    @staticmethod
    def _superoperator(unitary: np.ndarray, channel: np.ndarray | None) -> Tensor:
        """The superoperator of ``unitary`` followed by ``channel`` (row-major vec(rho), or None for
        no channel) on row-major vec(rho): ``channel (U (x) U^*)``, reshaped to ``(2,) * 4k`` for einsum."""
        d = unitary.shape[0]
        k = d.bit_length() - 1
        superoperator = np.kron(unitary, unitary.conj())
        if channel is not None:
            superoperator = channel @ superoperator
        return torch.as_tensor(superoperator, dtype=torch.complex128).reshape((2,) * (4 * k))

    def _phase_generator(self, name: str, qubits: list[int]) -> np.ndarray:
        """G (2**n, 2**n) with rho -> rho * exp(i theta G): g(r) - g(c) for the gate diag(exp(i theta g))."""
        if name == "rz":
            g = -0.5 * (1 - 2 * self._bits[qubits[0]])
        elif name == "p":
            g = self._bits[qubits[0]].astype(np.float64)
        else:  # rzz
            g = -0.5 * (1 - 2 * self._bits[qubits[0]]) * (1 - 2 * self._bits[qubits[1]])
        return (g[:, None] - g[None, :]).astype(np.float64)

    def _gather_index(self, name: str, qubits: list[int]) -> np.ndarray:
        """Flat index of rho[perm(r), perm(c)] for a permutation gate (perm its own inverse)."""
        k = np.arange(self.dim)
        bits = self._bits
        if name == "x":
            perm = k ^ (1 << qubits[0])
        elif name == "cx":
            perm = np.where(bits[qubits[0]] == 1, k ^ (1 << qubits[1]), k)
        elif name == "ccx":
            perm = np.where((bits[qubits[0]] & bits[qubits[1]]) == 1, k ^ (1 << qubits[2]), k)
        else:
            a, b = qubits
            perm = np.where(bits[a] != bits[b], k ^ ((1 << a) | (1 << b)), k)
        return (perm[:, None] * self.dim + perm[None, :]).reshape(-1)

    def _diagonal(self, observable: SparsePauliOp) -> np.ndarray:
        observable = SparsePauliOp(observable)
        if observable.num_qubits != self.n_qubits or np.any(observable.paulis.x):
            raise ValueError("the density-matrix engine measures diagonal (I/Z) observables on all circuit qubits")
        z = np.array([1 - 2 * b for b in self._bits]).reshape(self.n_qubits, self.dim)
        diag = np.zeros(self.dim)
        for mask, coeff in zip(observable.paulis.z, observable.coeffs):
            diag += coeff.real * np.prod(z[mask], axis=0) if mask.any() else coeff.real
        return diag

    # --- execution ---------------------------------------------------------------------------
    @staticmethod
    def _rotation(name: str, angles: list, x: Tensor, w: Tensor) -> Tensor:
        """The 2 x 2 matrix (or (B, 2, 2) matrices) of RX / RY / U from their angles."""
        values = [torch.as_tensor(a(x, w), dtype=torch.float64) for a in angles]
        if name in ("u", "u3"):
            theta, phi, lam = values
        else:
            theta = values[0]
        c, s = torch.cos(theta / 2), torch.sin(theta / 2)
        zero = torch.zeros_like(c)
        if name == "ry":
            entries = (torch.complex(c, zero), torch.complex(-s, zero), torch.complex(s, zero), torch.complex(c, zero))
        elif name == "rx":
            entries = (torch.complex(c, zero), torch.complex(zero, -s), torch.complex(zero, -s), torch.complex(c, zero))
        else:
            def phase(a):
                return torch.complex(torch.cos(a), torch.sin(a))
            entries = (torch.complex(c, zero), -phase(lam) * s, phase(phi) * s, phase(phi + lam) * c)
        entries = torch.broadcast_tensors(*entries)  # U: some angles may be per sample, others shared
        return torch.stack(entries, -1).reshape(*entries[0].shape, 2, 2)

    def _check(self, x, w) -> tuple[Tensor, Tensor]:
        x = torch.as_tensor(x, dtype=torch.float64)
        w = torch.as_tensor(w, dtype=torch.float64)
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"inputs must have shape (batch, {self.n_inputs}), got {tuple(x.shape)}")
        if w.dim() != 1 or w.shape[0] != self.n_weights:
            raise ValueError(f"weights must have shape ({self.n_weights},), got {tuple(w.shape)}")
        return x, w

    def density_matrix(self, x: Tensor, w: Tensor) -> Tensor:
        """Final density matrices, shape (B, 2**n, 2**n); ``x`` is (B, n_inputs), ``w`` (n_weights,)."""
        x, w = self._check(x, w)
        batch, n, dim = x.shape[0], self.n_qubits, self.dim
        rho = torch.zeros(batch, dim * dim, dtype=torch.complex128)
        rho[:, 0] = 1.0
        rho = rho.reshape((batch,) + (2,) * (2 * n))
        for op in self._ops:
            kind = op[0]
            if kind == "superop":
                rho = torch.einsum(op[2], op[1], rho)
            elif kind == "rotation":
                matrix = self._rotation(op[1], op[2], x, w)
                row_spec, column_spec = op[3]
                if matrix.dim() == 3:  # per-sample matrices: the batch letter joins the matrix's axes
                    row_spec, column_spec = (_BATCH + spec for spec in (row_spec, column_spec))
                rho = torch.einsum(column_spec, matrix.conj(), torch.einsum(row_spec, matrix, rho))
            else:  # phase
                theta = torch.as_tensor(op[1](x, w), dtype=torch.float64)
                angle = (theta.reshape(-1, 1, 1) if theta.dim() else theta) * op[2]
                factor = torch.complex(torch.cos(angle), torch.sin(angle))
                rho = (rho.reshape(batch, dim, dim) * factor).reshape(rho.shape)
        return rho.reshape(batch, dim, dim)

    def expectation(self, x: Tensor, w: Tensor) -> Tensor:
        """Expectation values of the observables, shape (B, n_outputs), differentiable in x and w."""
        probabilities = torch.diagonal(self.density_matrix(x, w), dim1=1, dim2=2).real
        return probabilities @ self._eigen


__all__ = ["MAX_QUBITS", "DensityMatrixProgram"]
