"""An exact, batched, differentiable statevector simulator in torch, compiled from a ``QuantumCircuit``.

The compiler walks the circuit instruction by instruction, so what is simulated is exactly the
circuit that would be transpiled and run on hardware. Speed comes from three facts:

* weights do not depend on the sample, so a weight gate's 2x2 matrix is built once per call and
  applied to the whole batch with one ``matmul``; only embedding gates carry per-sample matrices;
* runs of parameter-free permutation gates (CX, X, SWAP, CCX) are fused into one index gather,
  and diagonal gates (RZ, RZZ, P, CZ, ...) are elementwise phase products;
* circuits made only of real gates (RY, CX, H, ...) are simulated in float64, not complex128.

Expectation values of diagonal (I/Z) observables are one matmul of the probabilities.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import sympy
import torch
from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

Tensor = torch.Tensor

_REAL_GATES = {"ry", "cx", "x", "z", "cz", "swap", "h", "ccx", "id", "cry", "ch"}
_PERMUTATIONS = {"x", "cx", "swap", "ccx"}
_SKIPPED = {"barrier", "id", "delay"}
_CONTROLLED = {"cx": "x", "cy": "y", "cz": "z", "ch": "h", "crx": "rx", "cry": "ry", "crz": "rz", "cp": "p"}


class _Angle:
    """One gate parameter as a differentiable function of the inputs ``x`` (B, n_in) and weights ``w``."""

    def __init__(self, value, inputs: dict[Parameter, int], weights: dict[Parameter, int],
                 reader: _AffineReader | None = None):
        self.batched = False
        if isinstance(value, ParameterExpression) and not isinstance(value, Parameter):
            # fast path for long affine expressions (the amplitude embedding's multiplexor angles)
            terms = (reader or _AffineReader(inputs, weights)).read(value)
            if terms is not None:
                self._set_affine(*terms, len(inputs))
                return
        params = value.parameters if isinstance(value, ParameterExpression) else set()
        if not params:
            self.kind, self.const = "const", float(value)
            return
        unknown = [p for p in params if p not in inputs and p not in weights]
        if unknown:
            raise ValueError(f"circuit parameters {sorted(p.name for p in unknown)} are neither inputs nor weights")
        self.batched = any(p in inputs for p in params)
        if isinstance(value, Parameter):
            self.kind = "x" if value in inputs else "w"
            self.index = inputs[value] if value in inputs else weights[value]
            return
        grads = {p: value.gradient(p) for p in params}
        if all(not isinstance(g, ParameterExpression) for g in grads.values()):
            coef = np.zeros(len(inputs) + len(weights))
            for p, g in grads.items():
                coef[inputs[p] if p in inputs else len(inputs) + weights[p]] += float(g)
            self._set_affine(float(value.bind({p: 0.0 for p in params})), coef, len(inputs))
            return
        # any other expression (e.g. the zz embedding's (pi - x_i)(pi - x_j)): evaluate its sympy tree
        self.kind = "expr"
        names = {p.name: ("x", inputs[p]) if p in inputs else ("w", weights[p]) for p in params}
        self.expr = value.sympify()
        self.symbols = {s: names[str(s)] for s in self.expr.free_symbols}

    def _set_affine(self, const: float, coef: np.ndarray, n_inputs: int) -> None:
        """const + a.x + b.w, with ``coef`` = [a | b]."""
        self.kind, self.const = "affine", float(const)
        self.x_coef = torch.from_numpy(np.ascontiguousarray(coef[:n_inputs]))
        self.w_coef = torch.from_numpy(np.ascontiguousarray(coef[n_inputs:]))
        self.batched = bool(np.any(coef[:n_inputs]))

    def __call__(self, x: Tensor, w: Tensor):
        """Value: a float, a tensor of shape () or (B,) when ``w`` is shared, (B,) when batched."""
        if self.kind == "const":
            return self.const
        if self.kind == "x":
            return x[:, self.index]
        if self.kind == "w":
            return w[..., self.index]
        if self.kind == "affine":
            return self.const + x @ self.x_coef + w @ self.w_coef
        return _eval_sympy(self.expr, {s: (x[:, i] if src == "x" else w[..., i])
                                       for s, (src, i) in self.symbols.items()})


_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<op>[-+*/()])|(?P<name>[^\s+\-*/()]+))")


class _NotAffine(Exception):
    pass


class _AffineReader:
    """Reads an affine ``ParameterExpression`` (numbers, parameters, +, -, parentheses, and * or / by
    numbers) from its text in linear time, as ``(const, coefficients over [inputs | weights])``.

    Qiskit's ``gradient`` per parameter (and the expression's QPY replay) is quadratic in the
    expression's length, which made compiling an amplitude embedding of 9 qubits take minutes. The
    result is checked against Qiskit's own evaluation at a random point; anything not recognised
    (or not affine) gives None, and the caller falls back to Qiskit's symbolic gradients.
    """

    def __init__(self, inputs: dict[Parameter, int], weights: dict[Parameter, int]):
        n_inputs = len(inputs)
        columns = {p.name: i for p, i in inputs.items()}
        columns.update({p.name: n_inputs + i for p, i in weights.items()})
        # names must identify parameters (two parameters may share a name in a hand-made circuit)
        self.columns = columns if len(columns) == len(inputs) + len(weights) else {}
        point = np.random.default_rng(2024).uniform(-1.0, 1.0, len(inputs) + len(weights))
        self.point_vector = point
        self.point = {p: float(point[i]) for p, i in inputs.items()}
        self.point.update({p: float(point[n_inputs + i]) for p, i in weights.items()})
        self.size = len(point)

    def read(self, value: ParameterExpression) -> tuple[float, np.ndarray] | None:
        if not self.columns:
            return None
        try:
            terms = self._parse(str(value))
        except (_NotAffine, LookupError, ValueError, OverflowError):
            return None
        if not isinstance(terms, list):
            return None  # a constant: the general path handles it
        const, found = terms
        coef = np.zeros(self.size)
        if found:
            np.add.at(coef, np.fromiter(found.keys(), dtype=np.int64, count=len(found)),
                      np.fromiter(found.values(), dtype=np.float64, count=len(found)))
        try:  # every parameter must be bound here, or this expression has one we did not read
            expected = complex(value.bind(self.point, allow_unknown_parameters=True).numeric())
        except (TypeError, ValueError):
            return None
        products = coef * self.point_vector
        scale = 1.0 + abs(const) + float(np.abs(products).sum())
        if expected.imag or abs(expected.real - (const + math.fsum(products))) > 1e-12 * scale:
            return None
        return const, coef

    def _parse(self, text: str):
        """``[const, {column: coefficient}]`` of an affine text, or a number for a constant."""
        tokens = []
        position = 0
        for match in _TOKEN.finditer(text):
            if match.start() != position:
                raise _NotAffine
            position = match.end()
            kind = match.lastgroup
            tokens.append((kind, match.group(kind)))
        if text[position:].strip():
            raise _NotAffine
        tokens.append(("end", ""))
        columns = self.columns
        index = 0

        def scale(value, factor: float):
            if isinstance(value, list):
                return [value[0] * factor, {k: c * factor for k, c in value[1].items()}]
            return value * factor

        def atom():
            nonlocal index
            kind, text = tokens[index]
            index += 1
            if kind == "num":
                return float(text)
            if kind == "name":
                return [0.0, {columns[text]: 1.0}]  # KeyError: not a circuit parameter
            if kind == "op" and text in "+-":
                value = atom()
                return value if text == "+" else scale(value, -1.0)
            if kind == "op" and text == "(":
                value = expression()
                if tokens[index] != ("op", ")"):
                    raise _NotAffine
                index += 1
                return value
            raise _NotAffine

        def term():
            nonlocal index
            value = atom()
            while tokens[index][0] == "op" and tokens[index][1] in "*/":
                operator = tokens[index][1]
                index += 1
                if tokens[index] == ("op", "*"):
                    raise _NotAffine  # a power
                other = atom()
                if operator == "/":
                    if isinstance(other, list) or other == 0:
                        raise _NotAffine
                    value = scale(value, 1.0 / other)
                elif isinstance(value, list) and isinstance(other, list):
                    raise _NotAffine  # a product of two parameter-dependent factors
                else:
                    value = scale(other, value) if isinstance(other, list) else scale(value, other)
            return value

        def expression():
            nonlocal index
            const, found, affine, sign = 0.0, {}, False, 1.0
            while True:
                kind, text = tokens[index]
                if kind == "name" and tokens[index + 1] not in (("op", "*"), ("op", "/")):
                    column = columns[text]  # the common case: a bare parameter
                    found[column] = found.get(column, 0.0) + sign
                    affine = True
                    index += 1
                else:
                    value = term()
                    if isinstance(value, list):
                        affine = True
                        const += sign * value[0]
                        for k, c in value[1].items():
                            found[k] = found.get(k, 0.0) + sign * c
                    else:
                        const += sign * value
                if tokens[index][0] != "op" or tokens[index][1] not in "+-":
                    return [const, found] if affine else const
                sign = -1.0 if tokens[index][1] == "-" else 1.0
                index += 1

        value = expression()
        if tokens[index][0] != "end":
            raise _NotAffine
        return value


_SYMPY_FUNCS = {sympy.sin: torch.sin, sympy.cos: torch.cos, sympy.tan: torch.tan, sympy.exp: torch.exp,
                sympy.log: torch.log, sympy.Abs: torch.abs, sympy.asin: torch.asin, sympy.acos: torch.acos,
                sympy.atan: torch.atan}


def _eval_sympy(expr, values: dict):
    if expr in values:
        return values[expr]
    if expr.is_Number or expr is sympy.pi:
        return float(expr)
    args = [_eval_sympy(a, values) for a in expr.args]
    if expr.is_Add:
        return sum(args[1:], args[0])
    if expr.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if expr.is_Pow:
        return args[0] ** args[1]
    if expr.func in _SYMPY_FUNCS:
        return _SYMPY_FUNCS[expr.func](torch.as_tensor(args[0], dtype=torch.float64))
    raise NotImplementedError(f"cannot simulate parameter expression {expr}")


#: below this many amplitudes per call, torch's intra-op threads only cost: OpenMP workers that
#: wait for a busy core made a 2 ms Jacobian take up to 1 s on a loaded 2-core machine
SINGLE_THREAD_BELOW = 2**18


@contextlib.contextmanager
def torch_threads_for(amplitudes: int):
    """Run small simulations on one torch thread (restored afterwards); large ones as configured."""
    before = torch.get_num_threads()
    if amplitudes >= SINGLE_THREAD_BELOW or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_FIXED = {"x": [[0, 1], [1, 0]], "y": [[0, -1j], [1j, 0]], "z": [[1, 0], [0, -1]],
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


class StatevectorProgram:
    """A ``QuantumCircuit`` compiled to batched torch operations.

    Args:
        circuit: the circuit; every parameter must be one of ``inputs`` or ``weights``.
        inputs, weights: the ordered circuit parameters fed from ``x`` and ``w``.
        observables: diagonal (I/Z) ``SparsePauliOp``s; default ``Z_i`` for every qubit i.

    Every parametrised gate owns a column of an angle table computed once per call (one gather
    for plain parameters, one reduction for affine expressions); its half-angle cosines and sines
    are two vectorised ops, so a rotation costs a handful of elementwise ops on the state.
    """

    #: affine angle tables with at most this many coefficients are reduced elementwise, larger by matmul
    SMALL_AFFINE = 2**12

    def __init__(self, circuit: QuantumCircuit, inputs: Sequence[Parameter], weights: Sequence[Parameter],
                 observables: Sequence[SparsePauliOp] | None = None):
        if any(i.operation.name == "measure" for i in circuit.data):
            raise ValueError("the statevector engine takes circuits without measurements")
        self.n_qubits = n = circuit.num_qubits
        self.dim = 2**n
        self.n_inputs, self.n_weights = len(inputs), len(weights)
        input_index = {p: i for i, p in enumerate(inputs)}
        weight_index = {p: i for i, p in enumerate(weights)}
        reader = _AffineReader(input_index, weight_index)
        names = {i.operation.name for i in circuit.data}
        self.real = names <= _REAL_GATES
        self.dtype = torch.float64 if self.real else torch.complex128
        basis = np.arange(self.dim)
        # z[q][k] = +1 / -1 when qubit q of basis state k is 0 / 1 (Qiskit's little-endian order)
        self._z = np.array([1 - 2 * ((basis >> q) & 1) for q in range(n)], dtype=np.int64).reshape(n, self.dim)
        self._angles: list[_Angle] = []  # one column of the angle table per parametrised gate
        self._ops: list[Callable] = []
        perm: np.ndarray | None = None  # pending fused permutation
        # Until a qubit meets a multi-qubit gate its state is its own 2-vector: those leading
        # one-qubit gates (the embedding and the first rotation block) act on a product state,
        # applied to all qubits at once, moment by moment, and the state is their Kronecker product.
        self._prefix: list[list[tuple[str, int]]] = [[] for _ in range(n)]
        open_qubits = set(range(n))
        for instruction in circuit.data:
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
                self._ops.append(self._gather(perm))
                perm = None
            angles = [_Angle(p, input_index, weight_index, reader) for p in op.params]
            self._ops.append(self._compile(op.name, qubits, angles))
        if perm is not None:
            self._ops.append(self._gather(perm))
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

    @staticmethod
    def _gather(perm: np.ndarray):
        index = torch.tensor(perm, dtype=torch.long)
        return lambda psi, cos, sin: psi.index_select(1, index)

    def _column_of(self, angle: _Angle) -> int:
        """Register a gate angle in the angle table (columns are resolved after compilation)."""
        self._angles.append(angle)
        return len(self._angles) - 1

    def _rotation(self, name: str, q: int, angle: _Angle):
        """RX/RY/RZ/P(theta) on qubit q as elementwise ops on the two halves of the state."""
        hi, lo = 2 ** (self.n_qubits - 1 - q), 2**q
        slot = self._column_of(angle)

        def apply(psi, cos, sin):
            c, s = cos[self._columns[slot]], sin[self._columns[slot]]  # (B, 1, 1) half-angle cos, sin
            a0, a1 = psi.reshape(psi.shape[0], hi, 2, lo).unbind(2)
            return torch.stack(_rotate(name, c, s, a0, a1), 2).reshape(psi.shape)
        return apply

    def _fixed(self, matrix: np.ndarray, q: int):
        """A parameter-free one-qubit gate."""
        hi, lo = 2 ** (self.n_qubits - 1 - q), 2**q
        (m00, m01), (m10, m11) = (complex(v) for v in matrix[0]), (complex(v) for v in matrix[1])
        if self.real:
            m00, m01, m10, m11 = m00.real, m01.real, m10.real, m11.real

        def apply(psi, cos, sin):
            a0, a1 = psi.reshape(psi.shape[0], hi, 2, lo).unbind(2)
            return torch.stack((m00 * a0 + m01 * a1, m10 * a0 + m11 * a1), 2).reshape(psi.shape)
        return apply

    def _u(self, q: int, angles: list[_Angle]):
        """U(theta, phi, lambda) with the full (not half) phase angles taken from the table."""
        hi, lo = 2 ** (self.n_qubits - 1 - q), 2**q
        slots = [self._column_of(a) for a in angles]

        def apply(psi, cos, sin):
            theta, phi, lam = (self._columns[i] for i in slots)
            c, s = cos[theta], sin[theta]
            ep, el = (torch.complex(cos[k], sin[k]) ** 2 for k in (phi, lam))
            a0, a1 = psi.reshape(psi.shape[0], hi, 2, lo).unbind(2)
            return torch.stack((c * a0 - el * s * a1, ep * (s * a0 + el * c * a1)), 2).reshape(psi.shape)
        return apply

    def _zz(self, q0: int, q1: int, angle: _Angle):
        """RZZ(theta) = exp(-i theta/2 Z Z): a phase c - i s zz per basis state."""
        zz = torch.tensor(self._z[q0] * self._z[q1], dtype=torch.float64)
        slot = self._column_of(angle)

        def apply(psi, cos, sin):
            k = self._columns[slot]
            c, s = cos[k].reshape(-1, 1), sin[k].reshape(-1, 1)
            return psi * torch.complex(c.expand(-1, self.dim), -s * zz)
        return apply

    def _compile(self, name: str, qubits: list[int], angles: list[_Angle]):
        if name in _ROTATIONS:
            return self._rotation(name, qubits[0], angles[0])
        if name in ("u", "u3"):
            return self._u(qubits[0], angles)
        if name == "rzz":
            return self._zz(qubits[0], qubits[1], angles[0])
        if name == "cz":
            sign = torch.tensor(1 - 2 * (self._bit(qubits[0]) & self._bit(qubits[1])), dtype=self.dtype)
            return lambda psi, cos, sin: psi * sign
        if name in _CONTROLLED and len(qubits) == 2:
            base = _CONTROLLED[name]
            target = (self._rotation(base, qubits[1], angles[0]) if base in _ROTATIONS
                      else self._fixed(np.array(_FIXED[base]), qubits[1]))
            mask = torch.tensor(self._bit(qubits[0]), dtype=torch.bool)
            return lambda psi, cos, sin: torch.where(mask, target(psi, cos, sin), psi)
        if name in _FIXED and len(qubits) == 1:
            return self._fixed(np.array(_FIXED[name]), qubits[0])
        raise NotImplementedError(f"the statevector engine cannot simulate gate {name!r} on {len(qubits)} qubits")

    # --- execution ---------------------------------------------------------------------------
    def _half_angle_table(self, x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
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
            empty = torch.zeros(0, batch, dtype=torch.float64)
            return empty, empty
        half = torch.cat(columns, 1).T * 0.5  # (columns, B)
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
        """The state after the leading one-qubit gates: Kronecker product of per-qubit 2-vectors."""
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
        psi = torch.stack([v0[n - 1], v1[n - 1]], 1)
        for q in range(n - 2, -1, -1):  # qubit n-1 is the most significant bit
            psi = (psi.unsqueeze(2) * torch.stack([v0[q], v1[q]], 1).unsqueeze(1)).reshape(batch, -1)
        return psi

    def state(self, x: Tensor, w: Tensor) -> Tensor:
        """Final states, shape (B, 2**n); ``x`` is (B, n_inputs), ``w`` is (n_weights,) or (B, n_weights)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        w = torch.as_tensor(w, dtype=torch.float64)
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"inputs must have shape (batch, {self.n_inputs}), got {tuple(x.shape)}")
        if w.shape[-1] != self.n_weights:
            raise ValueError(f"weights must have {self.n_weights} entries, got shape {tuple(w.shape)}")
        cos, sin = self._half_angle_table(x, w)
        psi = self._product_state(x.shape[0], cos, sin)
        cos, sin = cos.reshape(-1, x.shape[0], 1, 1).unbind(0), sin.reshape(-1, x.shape[0], 1, 1).unbind(0)
        for op in self._ops:
            psi = op(psi, cos, sin)
        return psi

    def expectation(self, x: Tensor, w: Tensor) -> Tensor:
        """Expectation values of the observables, shape (B, n_outputs), differentiable in x and w."""
        psi = self.state(x, w)
        probs = psi * psi if self.real else (psi.real**2 + psi.imag**2)
        # an elementwise reduction: MKL's dgemm is pathologically slow for these small shapes
        return (probs.unsqueeze(-1) * self._eigen).sum(1)

    def traced(self, x: np.ndarray, w: np.ndarray, input_gradients: bool) -> Traced:
        """Outputs with the autograd graph kept for :meth:`jacobians` (weights repeated per sample,
        so that reverse mode yields per-sample rows)."""
        x = torch.as_tensor(x, dtype=torch.float64).detach().requires_grad_(input_gradients)
        batch = x.shape[0]
        w = torch.as_tensor(w, dtype=torch.float64).expand(batch, -1).clone().requires_grad_(True)
        with torch.enable_grad(), torch_threads_for(batch * self.dim):
            return Traced(self.expectation(x, w), x, w, input_gradients)

    def jacobians(self, traced: Traced) -> tuple[Tensor | None, Tensor]:
        """Per-sample Jacobians d<O_k>/dx (B, K, n_inputs) (None without input gradients) and
        d<O_k>/dw (B, K, n_weights): the K output cotangents go through one vectorised backward
        pass (``is_grads_batched``)."""
        out, x, w = traced.outputs, traced.x, traced.w
        batch, k = out.shape
        leaves = [leaf for leaf in ([x, w] if traced.input_gradients else [w]) if leaf.shape[-1] > 0]
        grads = []
        if leaves:
            cotangents = torch.eye(k, dtype=torch.float64).unsqueeze(1).expand(-1, batch, -1)
            with torch_threads_for(batch * self.dim * k):
                grads = torch.autograd.grad(out, leaves, cotangents, is_grads_batched=True, allow_unused=True)
        found = {id(leaf): (torch.zeros(k, *leaf.shape, dtype=torch.float64) if g is None else g).permute(1, 0, 2)
                 for leaf, g in zip(leaves, grads)}
        empty = torch.zeros(batch, k, 0, dtype=torch.float64)
        dx = found.get(id(x), empty) if traced.input_gradients else None
        return dx, found.get(id(w), empty)


@dataclass
class Traced:
    """Outputs of one batched call and the leaves of its autograd graph."""

    outputs: Tensor
    x: Tensor
    w: Tensor
    input_gradients: bool
