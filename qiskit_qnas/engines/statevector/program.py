"""The compiler of the statevector engine: a ``QuantumCircuit`` walked instruction by instruction into
a :class:`StatevectorProgram` of batched torch operations.

What is simulated is exactly the circuit that would be transpiled and run on hardware. The walk:

* until a qubit meets a multi-qubit gate its state is a 2-vector: the leading one-qubit gates (the
  embedding and the first rotation block) build a product state, all qubits at once;
* runs of parameter-free permutation gates (CX, X, SWAP, CCX) are fused into one row gather;
* circuits made only of real gates (RY, CX, H, ...) are simulated in float64, not complex128;
* every parametrised gate owns a column of the half-angle table, computed once per call, whose
  derivatives in the inputs and weights are a constant matrix (parameters, affine expressions) or
  autograd (other expressions);
* a declared state preparation (:class:`~.preparation.RYTreePreparation`) is not walked: the sweep
  starts from its closed-form state;
* a gate without a kernel of its own (any other gate of Qiskit's library, a user's composite gate) is
  replaced by its definition once, when the circuit is compiled (:func:`with_kernel_gates`).

Expectation values of diagonal (I/Z) observables are one reduction of the probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from .adjoint import _sweep_back
from .expressions import _AffineReader, _Angle
from .gates import (
    _FIXED,
    _ROTATIONS,
    _U,
    _ZZ,
    _adjoint,
    _Angles,
    _Controlled,
    _Fixed,
    _Gate,
    _Permutation,
    _rotate,
    _Rotation,
    _rotation_matrices,
    _Sign,
)
from .preparation import RYTreePreparation, _tree_node_inputs, _tree_state, _tree_vjp

Tensor = torch.Tensor

_REAL_GATES = {"ry", "cx", "x", "z", "cz", "swap", "h", "ccx", "id", "cry", "ch"}
_PERMUTATIONS = {"x", "cx", "swap", "ccx"}
_SKIPPED = {"barrier", "id", "delay"}
_CONTROLLED = {"cx": "x", "cy": "y", "cz": "z", "ch": "h", "crx": "rx", "cry": "ry", "crz": "rz", "cp": "p"}
#: rounds of ``QuantumCircuit.decompose`` a gate without a kernel may take to reach gates with one
MAX_DECOMPOSITION_ROUNDS = 8


def has_kernel(name: str, n_qubits: int, parametrised: bool) -> bool:
    """Whether the engine simulates gate ``name`` on ``n_qubits`` qubits directly (else it runs the
    gate's definition: :func:`with_kernel_gates`)."""
    if name in _SKIPPED or (name in _PERMUTATIONS and not parametrised):
        return True
    if n_qubits == 1:
        return name in _ROTATIONS or name in _FIXED or name in ("u", "u3")
    return n_qubits == 2 and (name in ("rzz", "cz") or name in _CONTROLLED)


def with_kernel_gates(circuit: QuantumCircuit, keep: int = 0) -> QuantumCircuit:
    """``circuit`` with every gate the engine has no kernel for (``rxx``, ``cswap``, ``iswap``,
    ``xx_plus_yy``, a user's composite gate, ...) replaced by its definition, round after round, once per
    circuit; the first ``keep`` instructions (a declared preparation) stay as they are. Parameters,
    expressions of them included, carry through (global phases do not change expectation values)."""
    def missing_kernels(instructions) -> list[str]:
        return sorted({i.operation.name for i in instructions
                       if not has_kernel(i.operation.name, len(i.qubits), bool(i.operation.params))})

    missing = missing_kernels(circuit.data[keep:])
    if not missing:
        return circuit
    head, tail = circuit.copy_empty_like(), circuit.copy_empty_like()
    for index, instruction in enumerate(circuit.data):
        (head if index < keep else tail).append(instruction)
    for _ in range(MAX_DECOMPOSITION_ROUNDS):
        decomposed = tail.decompose(gates_to_decompose=missing)
        if [i.operation.name for i in decomposed.data] == [i.operation.name for i in tail.data]:
            break  # no definition to go to
        tail = decomposed
        missing = missing_kernels(tail.data)
        if not missing:
            return head.compose(tail)
    raise NotImplementedError(f"the statevector engine cannot simulate {', '.join(missing)}: no definition in "
                              f"gates it has within {MAX_DECOMPOSITION_ROUNDS} rounds of decomposition")


class StatevectorProgram:
    """A ``QuantumCircuit`` compiled to batched torch operations.

    Args:
        circuit: the circuit; every parameter must be one of ``inputs`` or ``weights``.
        inputs, weights: the ordered circuit parameters fed from ``x`` and ``w``.
        observables: diagonal (I/Z) ``SparsePauliOp``s; default ``Z_i`` for every qubit i.
        preparation: optional :class:`RYTreePreparation`: its leading instructions are not
            simulated; every sweep starts from the tree's closed-form state.

    Every parametrised gate owns a column of an angle table computed once per call (one gather
    for plain parameters, one reduction for affine expressions); its half-angle cosines and sines
    are two vectorised ops, so a rotation costs a handful of elementwise ops on the state.

    :meth:`state` and :meth:`expectation` are differentiable by torch autograd. :meth:`jacobians`
    computes per-sample Jacobians of all observables with the adjoint method instead: one forward
    sweep, then one backward sweep that un-computes the state gate by gate (gates are unitary) while
    propagating the K cotangent states, so no intermediate state is stored.
    """

    #: affine angle tables with at most this many coefficients are reduced elementwise, larger by matmul
    SMALL_AFFINE = 2**12

    def __init__(self, circuit: QuantumCircuit, inputs: Sequence[Parameter], weights: Sequence[Parameter],
                 observables: Sequence[SparsePauliOp] | None = None,
                 preparation: RYTreePreparation | None = None):
        if any(i.operation.name == "measure" for i in circuit.data):
            raise ValueError("the statevector engine takes circuits without measurements")
        self.n_qubits = n = circuit.num_qubits
        self.dim = 2**n
        self.n_inputs, self.n_weights = len(inputs), len(weights)
        self._tree_inputs = _tree_node_inputs(preparation, circuit, list(inputs))
        skipped = 0 if preparation is None else preparation.n_instructions
        circuit = with_kernel_gates(circuit, skipped)  # after the preparation is checked against it
        instructions = circuit.data[skipped:]
        input_index = {p: i for i, p in enumerate(inputs)}
        weight_index = {p: i for i, p in enumerate(weights)}
        reader = _AffineReader(input_index, weight_index)
        names = {i.operation.name for i in instructions}  # the tree's closed-form state is real
        self.real = names <= _REAL_GATES
        self.dtype = torch.float64 if self.real else torch.complex128
        basis = np.arange(self.dim)
        # z[q][k] = +1 / -1 when qubit q of basis state k is 0 / 1 (Qiskit's little-endian order)
        self._z = np.array([1 - 2 * ((basis >> q) & 1) for q in range(n)], dtype=np.int64).reshape(n, self.dim)
        self._angles: list[_Angle] = []  # one column of the angle table per parametrised gate
        self._ops: list[_Gate] = []
        perm: np.ndarray | None = None  # pending fused permutation
        # Until a qubit meets a multi-qubit gate its state is its own 2-vector: those leading
        # one-qubit gates (the embedding and the first rotation block) act on a product state,
        # applied to all qubits at once, moment by moment, and the state is their Kronecker product.
        # (after a tree preparation the state is entangled: no qubit starts a product state)
        self._prefix: list[list[tuple[str, int]]] = [[] for _ in range(n)]
        open_qubits = set(range(n)) if preparation is None else set()
        for instruction in instructions:
            op = instruction.operation
            qubits = [circuit.find_bit(q).index for q in instruction.qubits]
            if op.name in _SKIPPED:
                continue
            if len(qubits) == 1 and qubits[0] in open_qubits and (op.name in _ROTATIONS or op.name in _FIXED):
                angle = _Angle(op.params[0], input_index, weight_index, reader) if op.params else None
                self._prefix[qubits[0]].append((op.name, -1 if angle is None else self._column_of(angle)))
                continue
            open_qubits.difference_update(qubits)
            if op.name in _PERMUTATIONS and not op.params:
                step = self._permutation(op.name, qubits)
                perm = step if perm is None else perm[step]
                continue
            if perm is not None:
                self._ops.append(_Permutation(perm))
                perm = None
            angles = [_Angle(p, input_index, weight_index, reader) for p in op.params]
            self._ops.append(self._compile(op.name, qubits, angles))
        if perm is not None:
            self._ops.append(_Permutation(perm))
        self._plain = torch.tensor([a.index + (self.n_inputs if a.kind == "w" else 0)
                                    for a in self._angles if a.kind in ("x", "w")], dtype=torch.long)
        affine = [a for a in self._angles if a.kind == "affine"]
        self._affine_coef = torch.stack([torch.cat([a.x_coef, a.w_coef]) for a in affine], 1) if affine else None
        self._affine_const = torch.tensor([a.const for a in affine], dtype=torch.float64)
        self._exprs = [a for a in self._angles if a.kind == "expr"]
        consts = [a for a in self._angles if a.kind == "const"]
        self._consts = torch.tensor([[a.const for a in consts]], dtype=torch.float64)
        # the angle table's columns are [plain | affine | expr | const]; slot k of _angles -> column
        order = [a for a in self._angles if a.kind in ("x", "w")] + affine + self._exprs + consts
        column = {id(a): k for k, a in enumerate(order)}
        self._columns = [column[id(a)] for a in self._angles]
        # columns whose angle does not depend on the inputs (weights, constants): shared by a batch
        self._shared_columns = [False] * len(order)
        for a in order:
            self._shared_columns[column[id(a)]] = not a.batched
        # the leading one-qubit gates as gates too (the adjoint pass may sweep back through them)
        self._prefix_gates: list[_Gate] = []
        for moment in range(max(len(p) for p in self._prefix)):
            for q, gates in enumerate(self._prefix):
                if moment < len(gates):
                    name, slot = gates[moment]
                    self._prefix_gates.append(_Rotation(name, n, q, slot) if name in _ROTATIONS
                                              else _Fixed(_FIXED[name], n, q, self.dtype))
        groups: dict[str, list[int]] = {}
        for gate in self._ops + self._prefix_gates:
            gate.columns = tuple(self._columns[slot] for slot in gate.slots)
            if isinstance(gate, _Controlled):
                gate.target.columns = gate.columns
            rotation = gate.target if isinstance(gate, _Controlled) else gate
            if isinstance(rotation, _Rotation) and self._shared_columns[rotation.columns[0]]:
                groups.setdefault(rotation.name, []).append(rotation.columns[0])
        # shared rotation angles: their 2 x 2 matrices are built together, once per call
        self._matrix_groups = {name: (torch.tensor(cols, dtype=torch.long), cols) for name, cols in groups.items()}
        # d(half-angle table)/d[x, w] of plain, affine and constant columns (expressions: autograd)
        jacobian = torch.zeros(len(order), self.n_inputs + self.n_weights, dtype=torch.float64)
        for k, a in enumerate(order):
            if a.kind == "x":
                jacobian[k, a.index] = 0.5
            elif a.kind == "w":
                jacobian[k, self.n_inputs + a.index] = 0.5
            elif a.kind == "affine":
                jacobian[k] = 0.5 * torch.cat([a.x_coef, a.w_coef])
        self._half_jacobian = jacobian
        self._expr_columns = torch.tensor([column[id(a)] for a in self._exprs], dtype=torch.long)
        self._fixed_entries = {name: [[complex(v).real if self.real else complex(v) for v in row] for row in m]
                               for name, m in _FIXED.items()}
        self._plan = self._prefix_plan()
        observables = observables if observables is not None else [
            SparsePauliOp.from_sparse_list([("Z", [i], 1.0)], n) for i in range(n)]
        self.n_outputs = len(observables)
        self._eigen = torch.tensor(np.stack([self._diagonal(o) for o in observables], axis=1),
                                   dtype=torch.float64)

    # --- compilation -------------------------------------------------------------------------
    def _diagonal(self, observable: SparsePauliOp) -> np.ndarray:
        observable = SparsePauliOp(observable)
        if observable.num_qubits != self.n_qubits or np.any(observable.paulis.x):
            raise ValueError("the statevector engine measures diagonal (I/Z) observables on all circuit qubits")
        diag = np.zeros(self.dim)
        for z, coeff in zip(observable.paulis.z, observable.coeffs):
            diag += coeff.real * np.prod(self._z[z], axis=0) if z.any() else coeff.real
        return diag

    def _bit(self, q: int) -> np.ndarray:
        return (np.arange(self.dim) >> q) & 1

    def _permutation(self, name: str, qubits: list[int]) -> np.ndarray:
        k = np.arange(self.dim)
        if name == "x":
            return k ^ (1 << qubits[0])
        if name == "cx":
            return np.where(self._bit(qubits[0]) == 1, k ^ (1 << qubits[1]), k)
        if name == "ccx":
            both = (self._bit(qubits[0]) & self._bit(qubits[1])) == 1
            return np.where(both, k ^ (1 << qubits[2]), k)
        a, b = qubits  # swap
        differ = self._bit(a) != self._bit(b)
        return np.where(differ, k ^ ((1 << a) | (1 << b)), k)

    def _column_of(self, angle: _Angle) -> int:
        """Register a gate angle in the angle table (columns are resolved after compilation)."""
        self._angles.append(angle)
        return len(self._angles) - 1

    def _compile(self, name: str, qubits: list[int], angles: list[_Angle]) -> _Gate:
        n = self.n_qubits
        if name in _ROTATIONS:
            return _Rotation(name, n, qubits[0], self._column_of(angles[0]))
        if name in ("u", "u3"):
            return _U(n, qubits[0], [self._column_of(a) for a in angles])
        if name == "rzz":
            return _ZZ(self._z[qubits[0]] * self._z[qubits[1]], self._column_of(angles[0]))
        if name == "cz":
            return _Sign(1 - 2 * (self._bit(qubits[0]) & self._bit(qubits[1])), self.dtype)
        if name in _CONTROLLED and len(qubits) == 2:
            base = _CONTROLLED[name]
            target = (_Rotation(base, n, qubits[1], self._column_of(angles[0])) if base in _ROTATIONS
                      else _Fixed(_FIXED[base], n, qubits[1], self.dtype))
            return _Controlled(target, self._bit(qubits[0]).astype(bool))
        if name in _FIXED and len(qubits) == 1:
            return _Fixed(_FIXED[name], n, qubits[0], self.dtype)
        raise NotImplementedError(f"the statevector engine cannot simulate gate {name!r} on {len(qubits)} qubits")

    # --- execution ---------------------------------------------------------------------------
    def _half_angles(self, x: Tensor, w: Tensor) -> Tensor:
        """The half-angle table, shape (columns, B)."""
        batch = x.shape[0]
        params = torch.cat([x, w.expand(batch, -1)], 1)
        columns = []
        if len(self._plain):
            columns.append(params.index_select(1, self._plain))
        if self._affine_coef is not None:
            if self._affine_coef.numel() <= self.SMALL_AFFINE:
                # an elementwise reduction: MKL's dgemm is pathologically slow for these small shapes
                columns.append(self._affine_const + (params.unsqueeze(2) * self._affine_coef).sum(1))
            else:  # e.g. a wide amplitude embedding: (B, P, A) temporaries would take gigabytes
                columns.append(self._affine_const + params @ self._affine_coef)
        for a in self._exprs:
            columns.append(torch.as_tensor(a(x, w), dtype=torch.float64).expand(batch).unsqueeze(1))
        if self._consts.shape[1]:
            columns.append(self._consts.expand(batch, -1))
        if not columns:
            return torch.zeros(0, batch, dtype=torch.float64)
        return torch.cat(columns, 1).T * 0.5  # (columns, B)

    def _half_angle_table(self, x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        half = self._half_angles(x, w)
        return torch.cos(half), torch.sin(half)

    def _prefix_plan(self) -> list[tuple[str, Tensor, Tensor | None, bool]]:
        """Moments of the leading one-qubit gates: (gate, qubits, angle-table columns, all qubits?)."""
        plan = []
        for moment in range(max(len(p) for p in self._prefix)):
            groups: dict[str, list[tuple[int, int]]] = {}
            for q, gates in enumerate(self._prefix):
                if moment < len(gates):
                    name, slot = gates[moment]
                    groups.setdefault(name, []).append((q, slot))
            for name, members in groups.items():
                qs = torch.tensor([q for q, _ in members])
                cols = None if name in _FIXED else torch.tensor([self._columns[slot] for _, slot in members])
                plan.append((name, qs, cols, len(members) == self.n_qubits))
        return plan

    def _product_state(self, batch: int, cos: Tensor, sin: Tensor) -> Tensor:
        """The states after the leading one-qubit gates, (2**n, B): Kronecker products of per-qubit 2-vectors."""
        n = self.n_qubits
        v0 = torch.ones(n, batch, dtype=self.dtype)
        v1 = torch.zeros(n, batch, dtype=self.dtype)
        for name, qs, cols, everywhere in self._plan:
            a0, a1 = (v0, v1) if everywhere else (v0.index_select(0, qs), v1.index_select(0, qs))
            if cols is None:
                (m00, m01), (m10, m11) = self._fixed_entries[name]
                b0, b1 = m00 * a0 + m01 * a1, m10 * a0 + m11 * a1
            else:
                b0, b1 = _rotate(name, cos.index_select(0, cols), sin.index_select(0, cols), a0, a1)
            v0, v1 = (b0, b1) if everywhere else (v0.index_copy(0, qs, b0), v1.index_copy(0, qs, b1))
        psi = torch.stack([v0[n - 1], v1[n - 1]], 0)
        for q in range(n - 2, -1, -1):  # qubit n-1 is the most significant bit
            psi = (psi.unsqueeze(1) * torch.stack([v0[q], v1[q]], 0).unsqueeze(0)).reshape(-1, batch)
        return psi

    def _initial_state(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """The state the gate sweep starts from, (2**n, B): the tree's, or the leading gates' product state."""
        if self._tree_inputs is None:
            return self._product_state(x.shape[0], cos, sin)
        return _tree_state(x, self._tree_inputs, self.n_qubits).to(self.dtype)

    def _check(self, x, w) -> tuple[Tensor, Tensor]:
        x = torch.as_tensor(x, dtype=torch.float64)
        w = torch.as_tensor(w, dtype=torch.float64)
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"inputs must have shape (batch, {self.n_inputs}), got {tuple(x.shape)}")
        if w.shape[-1] != self.n_weights:
            raise ValueError(f"weights must have {self.n_weights} entries, got shape {tuple(w.shape)}")
        return x, w

    def _angle_set(self, cos: Tensor, sin: Tensor, shared_weights: bool) -> _Angles:
        """The gates' view of the half-angle table (columns, B): 0-dim values for angles shared by
        the batch (when the weights are), and the 2 x 2 matrices of shared rotations."""
        columns = cos.shape[0]
        cos_rows, sin_rows = list(cos.unbind(0)), list(sin.unbind(0))
        matrix: list[Tensor | None] = [None] * columns
        adjoint: list[Tensor | None] = [None] * columns
        if shared_weights and columns and cos.shape[1]:
            shared = self._shared_columns
            cos_rows = [r[0] if shared[k] else r for k, r in enumerate(cos_rows)]
            sin_rows = [r[0] if shared[k] else r for k, r in enumerate(sin_rows)]
            for name, (index, cols) in self._matrix_groups.items():
                matrices = _rotation_matrices(name, cos[index, 0], sin[index, 0])
                for k, m, a in zip(cols, matrices.unbind(0), _adjoint(matrices).unbind(0)):
                    matrix[k], adjoint[k] = m, a
        return _Angles(cos_rows, sin_rows, matrix, adjoint)

    def _sweep(self, psi: Tensor, angles: _Angles) -> Tensor:
        for gate in self._ops:
            psi = gate(psi, angles)
        return psi

    def _final(self, x: Tensor, w: Tensor) -> Tensor:
        """Final states amplitude-major, (2**n, B)."""
        cos, sin = self._half_angle_table(x, w)
        psi = self._initial_state(x, cos, sin)
        return self._sweep(psi, self._angle_set(cos, sin, w.dim() == 1))

    def state(self, x: Tensor, w: Tensor) -> Tensor:
        """Final states, shape (B, 2**n); ``x`` is (B, n_inputs), ``w`` is (n_weights,) or (B, n_weights)."""
        x, w = self._check(x, w)
        return self._final(x, w).T

    def _expectation_of(self, psi: Tensor) -> Tensor:
        """<O_k> of amplitude-major states (2**n, B): (B, K)."""
        probs = psi * psi if self.real else (psi.real**2 + psi.imag**2)
        # an elementwise reduction: MKL's dgemm is pathologically slow for these small shapes
        return (probs.unsqueeze(-1) * self._eigen.unsqueeze(1)).sum(0)

    def expectation(self, x: Tensor, w: Tensor) -> Tensor:
        """Expectation values of the observables, shape (B, n_outputs), differentiable in x and w."""
        x, w = self._check(x, w)
        return self._expectation_of(self._final(x, w))

    def run(self, x, w) -> tuple[Tensor, Tensor]:
        """Outputs (B, K) and final states (2**n, B, amplitude-major), without autograd."""
        x, w = self._check(x, w)
        with torch.no_grad():
            psi = self._final(x, w)
            return self._expectation_of(psi), psi

    #: up to this many amplitudes the adjoint pass also sweeps back through the leading one-qubit
    #: gates (fewer, larger ops); beyond, autograd differentiates their Kronecker product
    PREFIX_SWEEP_MAX = 2**7

    def jacobians(self, x, w, input_gradients: bool = True, final_state: Tensor | None = None
                  ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Outputs (B, K) and per-sample Jacobians d<O_k>/dx (B, K, n_inputs) (None without input
        gradients) and d<O_k>/dw (B, K, n_weights), by the adjoint method.

        ``final_state`` (optional): the final states :meth:`run` returned for the same ``x`` and
        ``w`` (saves the forward sweep). With f_k = <psi|O_k|psi> and lambda_k = O_k psi swept back
        through U^dagger of every gate together with psi, df_k/dh = 2 Re <lambda_k| dU/dh psi_before>
        for each gate half-angle h; then the chain rule through the angle table (a constant matrix
        for parameters and affine expressions, autograd for other expressions).
        """
        x, w = self._check(x, w)
        return self._adjoint(x, w, self._eigen.unsqueeze(2), input_gradients, final_state)

    def vjp(self, x, w, grad_outputs, input_gradients: bool = True, final_state: Tensor | None = None
            ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Outputs (B, K) and the vector-Jacobian products of ``grad_outputs`` g (B, K): per sample
        sum_k g_bk d<O_k>/dx (B, n_inputs) (None without input gradients) and sum_k g_bk d<O_k>/dw
        (B, n_weights).

        What a training step needs: the adjoint sweep carries one cotangent state per sample,
        (sum_k g_bk O_k) psi_b, instead of K, so it costs about 2 / (1 + K) of :meth:`jacobians`.
        """
        x, w = self._check(x, w)
        g = torch.as_tensor(grad_outputs, dtype=torch.float64)
        if g.shape != (x.shape[0], self.n_outputs):
            raise ValueError(f"grad_outputs must have shape ({x.shape[0]}, {self.n_outputs}), got {tuple(g.shape)}")
        outputs, dx, dw = self._adjoint(x, w, (self._eigen @ g.T).unsqueeze(1), input_gradients, final_state)
        return outputs, (None if dx is None else dx[:, 0]), dw[:, 0]

    def _adjoint(self, x: Tensor, w: Tensor, cotangent_diagonals: Tensor, input_gradients: bool,
                 final_state: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        """The adjoint sweep for cotangent states D_m psi with diagonal D_m given as
        ``cotangent_diagonals`` (2**n, M, 1) (shared by the batch) or (2**n, M, B): outputs (B, K) and
        d Re<psi|D_m|psi>/d[x, w] as (B, M, n_inputs) and (B, M, n_weights)."""
        batch, k_out = x.shape[0], cotangent_diagonals.shape[1]
        tree = self._tree_inputs is not None  # the sweep starts from the tree's state (no leading gates)
        sweep_prefix = not tree and self.dim <= self.PREFIX_SWEEP_MAX
        autograd_prefix = not tree and not sweep_prefix
        use_autograd = len(self._expr_columns) > 0 or autograd_prefix
        w_in = w
        if use_autograd:
            x = x.detach().requires_grad_(input_gradients)
            w_in = w.detach().expand(batch, -1).clone().requires_grad_(True)  # per-sample rows of dw
        with torch.set_grad_enabled(use_autograd):
            half = self._half_angles(x, w_in)
            cos, sin = torch.cos(half), torch.sin(half)
            # taken here, under grad mode: a backward pass (TorchConnector's) runs with grad disabled
            expr_half = half[self._expr_columns]
            psi0 = None if not autograd_prefix and final_state is not None else self._initial_state(x, cos, sin)
        with torch.no_grad():
            angles = self._angle_set(cos.detach(), sin.detach(), w.dim() == 1)
            if final_state is None:
                assert psi0 is not None  # computed whenever no final state is given
                psi = self._sweep(psi0.detach(), angles)
            else:
                psi = final_state
            outputs = self._expectation_of(psi)
            gates = (self._prefix_gates if sweep_prefix else []) + self._ops
            overlaps, both = _sweep_back(gates, psi, cotangent_diagonals, angles, half.shape[0],
                                         keep_initial=not sweep_prefix)
            grad_half = 2 * overlaps[:, 1:].transpose(1, 2)  # (columns, B, K)
            d = (grad_half.reshape(half.shape[0], -1).T @ self._half_jacobian).reshape(batch, k_out, -1)
            dx, dw = d[..., :self.n_inputs], d[..., self.n_inputs:]
            if self._tree_inputs is not None and input_gradients:  # the cotangents now belong to the tree's state
                dx = dx + _tree_vjp(x.detach(), self._tree_inputs, self.n_qubits, 2 * both[:, 1:].real)
        if use_autograd:
            pairs = [(expr_half, grad_half[self._expr_columns].permute(2, 0, 1))]
            if autograd_prefix and psi0 is not None:  # psi0 is always computed with autograd_prefix
                pairs.append((psi0, 2 * both[:, 1:].transpose(0, 1)))
            pairs = [(out, cot) for out, cot in pairs if out.requires_grad]
            leaves = [leaf for leaf in ([x, w_in] if input_gradients else [w_in]) if leaf.shape[-1] > 0]
            if pairs and leaves:
                found = torch.autograd.grad([p[0] for p in pairs], leaves, [p[1] for p in pairs],
                                            is_grads_batched=True, allow_unused=True)
                for leaf, g in zip(leaves, found):
                    if g is not None and leaf is x:
                        dx = dx + g.permute(1, 0, 2)
                    elif g is not None:
                        dw = dw + g.permute(1, 0, 2)
        return outputs, (dx if input_gradients else None), dw
