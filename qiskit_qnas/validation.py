"""Argument checks: the one error an invalid argument raises, and the checks every module uses.

An :class:`InvalidArgument` is a ``ValueError`` whose text is ``invalid NAME=VALUE; allowed:
ALLOWED`` and which keeps ``name``, ``value`` and ``allowed`` as attributes, so a caller that knows
the argument by another name (the command line's flags) can say so without reading the text.

The checks share one rule of what a number is: ints, floats and their numpy types count, bools
(``True``, ``numpy.True_``) never do, and nothing is rounded or parsed (``2.0`` is not an integer,
``"3"`` is not a number). The bottom of the package: it imports nothing of it.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, Literal, TypeGuard, overload

import numpy as np


class InvalidArgument(ValueError):
    """An argument outside what it allows: ``invalid {name}={value!r}{context}; allowed: {allowed}``.

    Args:
        name: the argument, as the function that refuses it calls it.
        value: what it was given.
        allowed: what it accepts, in words.
        context: text right after the value (with its own leading space or colon) saying in what
            setting it is refused, e.g. ``" for a non-Runtime target"``.
        message: the whole text instead, for the few checks worded otherwise; ``name``, ``value``
            and ``allowed`` still describe the argument.
    """

    def __init__(self, name: str, value: Any, allowed: str, context: str = "", message: str | None = None):
        self.name, self.value, self.allowed, self.context, self.message = name, value, allowed, context, message
        super().__init__(message if message is not None else f"invalid {name}={value!r}{context}; allowed: {allowed}")

    def __reduce__(self):
        # an exception pickles as its class called with ``args`` (the text alone); a worker process's
        # error reaches the caller with its attributes
        return type(self), (self.name, self.value, self.allowed, self.context, self.message)


def is_integer(value: Any) -> TypeGuard[int | np.integer]:
    """An ``int`` or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An ``int``, ``float`` or numpy integer / floating value, not a bool (NaN and infinities included)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _integers(low: int, high: int | None) -> str:
    return f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"


# the overloads type a call without ``allow_none=True`` as returning an ``int`` (a ``float``), never None
@overload
def check_int(name: str, value: Any, low: int, high: int | None = ..., allow_none: Literal[False] = ...,
              allowed: str | None = ...) -> int: ...
@overload
def check_int(name: str, value: Any, low: int, high: int | None = ..., allow_none: bool = ...,
              allowed: str | None = ...) -> int | None: ...
def check_int(name: str, value: Any, low: int, high: int | None = None, allow_none: bool = False,
              allowed: str | None = None) -> int | None:
    """``value`` as an ``int``: an integer from ``low`` to ``high`` (inclusive; None: no upper bound),
    or None when ``allow_none``; else :class:`InvalidArgument` with ``allowed`` (default ``an integer >=
    low`` / ``an integer from low to high``, then ``or None``)."""
    if value is None and allow_none:
        return None
    if not is_integer(value) or value < low or (high is not None and value > high):
        raise InvalidArgument(name, value, allowed or _integers(low, high) + (" or None" if allow_none else ""))
    return int(value)


@overload
def check_number(name: str, value: Any, low: float = ..., high: float = ..., *, low_inclusive: bool = ...,
                 high_inclusive: bool = ..., allow_none: Literal[False] = ..., allowed: str | None = ...) -> float: ...
@overload
def check_number(name: str, value: Any, low: float = ..., high: float = ..., *, low_inclusive: bool = ...,
                 high_inclusive: bool = ..., allow_none: bool = ..., allowed: str | None = ...) -> float | None: ...
def check_number(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
                 low_inclusive: bool = True, high_inclusive: bool = False, allow_none: bool = False,
                 allowed: str | None = None) -> float | None:
    """``value`` as a ``float``: a number (:func:`is_number`, never NaN or -inf) between ``low`` and
    ``high``, each bound inclusive or not; or None when ``allow_none``. The default upper bound,
    infinity excluded, makes it a finite number; ``high_inclusive`` with it admits infinity (a bound
    that may be absent). Else :class:`InvalidArgument` with ``allowed`` (default a description of
    the interval)."""
    if value is None and allow_none:
        return None
    above = is_number(value) and value > -math.inf and (value >= low if low_inclusive else value > low)
    if not (above and (value <= high if high_inclusive else value < high)):  # NaN fails every comparison
        raise InvalidArgument(name, value, allowed or _numbers(low, high, low_inclusive, high_inclusive, allow_none))
    return float(value)


def _numbers(low: float, high: float, low_inclusive: bool, high_inclusive: bool, allow_none: bool) -> str:
    bounds = [f"{'>=' if low_inclusive else '>'} {low:g}"] if low > -math.inf else []
    bounds += [f"{'<=' if high_inclusive else '<'} {high:g}"] if high < math.inf else []
    finite = "finite " if high == math.inf and not high_inclusive else ""
    return " ".join([f"a {finite}number", " and ".join(bounds)]).strip() + (" or None" if allow_none else "")


@overload
def check_positive(name: str, value: Any, allow_zero: bool = ..., allow_none: Literal[False] = ...,
                   allowed: str | None = ...) -> float: ...
@overload
def check_positive(name: str, value: Any, allow_zero: bool = ..., allow_none: bool = ...,
                   allowed: str | None = ...) -> float | None: ...
def check_positive(name: str, value: Any, allow_zero: bool = False, allow_none: bool = False,
                   allowed: str | None = None) -> float | None:
    """``value`` as a ``float``: a finite number > 0 (>= 0 with ``allow_zero``), or None when
    ``allow_none``; else :class:`InvalidArgument` with ``allowed`` (default ``a finite number > 0``)."""
    default = f"a finite number {'>=' if allow_zero else '>'} 0" + (" or None" if allow_none else "")
    return check_number(name, value, 0, low_inclusive=allow_zero, allow_none=allow_none, allowed=allowed or default)


def check_fraction(name: str, value: Any, allowed: str = "a number strictly between 0 and 1") -> float:
    """``value`` as a ``float`` strictly between 0 and 1; else :class:`InvalidArgument`."""
    return check_number(name, value, 0, 1, low_inclusive=False, allowed=allowed)


def check_choice(name: str, value: Any, allowed: Collection[str]) -> str:
    """``value`` when it is one of the strings ``allowed``; else :class:`InvalidArgument` listing them."""
    if not isinstance(value, str) or value not in allowed:
        raise InvalidArgument(name, value, ", ".join(allowed))
    return value


__all__ = ["InvalidArgument", "check_choice", "check_fraction", "check_int", "check_number", "check_positive",
           "is_integer", "is_number"]


def check_parameter_values(name: str, values: Any, length: int, *, rows: bool, allow_empty: bool = False,
                           context: str = "") -> np.ndarray:
    """``values`` as finite float64 numbers: one vector of ``length`` (``rows=False``, e.g. a circuit's
    weights) or rows of ``length`` (``rows=True``, e.g. the input angles of N samples; a single vector
    is one row, and no rows at all only with ``allow_empty``). ``context`` names what they belong to
    (``" for q4-l1-angle_y-ry-none1"``)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.full((), np.nan)
    if rows and array.ndim == 1:
        array = array[None, :]
    shape = f"(n_samples, {length})" if rows else f"({length},)"
    allowed = f"finite numbers of shape {shape}"
    if array.ndim != (2 if rows else 1) or array.shape[-1] != length or not np.all(np.isfinite(array)):
        raise InvalidArgument(name, values, allowed, context,
                              message=f"invalid {name} of shape {np.shape(array)}{context}; allowed: {allowed}")
    if rows and array.shape[0] == 0 and not allow_empty:
        allowed = f"at least one row of shape {shape}"
        raise InvalidArgument(name, values, allowed, context, message=f"invalid {name}: no rows{context}; "
                                                                      f"allowed: {allowed}")
    return array
