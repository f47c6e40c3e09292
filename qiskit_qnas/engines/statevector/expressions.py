"""Gate parameters as differentiable functions of the circuit inputs ``x`` and weights ``w``.

A gate's parameter is a number, a circuit ``Parameter`` or a ``ParameterExpression``. Each becomes
an :class:`_Angle`: a constant, one input or weight, an affine form const + a.x + b.w (the
coefficients read once, so their derivatives are a constant matrix), or any other expression,
evaluated from its sympy tree in torch (differentiable by autograd).
"""

from __future__ import annotations

import math
import re

import numpy as np
import sympy
import torch
from qiskit.circuit import Parameter, ParameterExpression

Tensor = torch.Tensor


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
        text = str(value)
        try:
            try:
                flat = self._flat(text)
            except (_NotAffine, LookupError, ValueError):
                flat = None
            if flat is not None:
                const, (index, values) = 0.0, flat
            else:
                terms = self._parse(text)
                if not isinstance(terms, list):
                    return None  # a constant: the general path handles it
                const, found = terms
                index = np.fromiter(found.keys(), dtype=np.int64, count=len(found))
                values = np.fromiter(found.values(), dtype=np.float64, count=len(found))
        except (_NotAffine, LookupError, ValueError, OverflowError):
            return None
        coef = np.zeros(self.size)
        np.add.at(coef, index, values)
        try:  # every parameter must be bound here, or this expression has one we did not read
            expected = complex(value.bind(self.point, allow_unknown_parameters=True).numeric())
        except (TypeError, ValueError):
            return None
        products = coef * self.point_vector
        scale = 1.0 + abs(const) + float(np.abs(products).sum())
        if expected.imag or abs(expected.real - (const + math.fsum(products))) > 1e-12 * scale:
            return None
        return const, coef

    _FLAT = re.compile(r"^\(([^()*/]*)\)\*(\(-[0-9.eE+-]+\)|[0-9.eE+-]+)$")
    _SIGNS = re.compile(r"\s*([+-])\s*")

    def _flat(self, text: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Fast path for ``(+-a +- b ...)*c`` (the amplitude embedding's angles): (columns, coefficients)."""
        match = self._FLAT.match(text)
        if match is None:
            return None
        inner, factor = match.groups()
        factor = float(factor.strip("()"))
        parts = self._SIGNS.split(inner.strip())
        if parts[0] == "":
            parts = parts[1:]
        else:
            parts.insert(0, "+")
        if len(parts) % 2:
            raise _NotAffine
        columns = self.columns
        index = np.array([columns[name] for name in parts[1::2]], dtype=np.int64)  # KeyError: unknown
        values = np.where(np.array(parts[0::2]) == "-", -factor, factor)
        return index, values

    def _parse(self, text: str):
        """``[const, {column: coefficient}]`` of an affine text, or a number for a constant."""
        found = _TOKEN.findall(text)  # (number, operator, name) per token
        tokens = [("num", t[0]) if t[0] else ("op", t[1]) if t[1] else ("name", t[2]) for t in found]
        if "".join(t[1] for t in tokens) != "".join(text.split()):
            raise _NotAffine  # characters that are not tokens
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
            const, affine, sign = 0.0, False, 1.0
            found: dict[int, float] = {}  # column -> coefficient
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
