"""Memory: the limit a search may use (``max_memory``), what the machine has, and the up-front refusal.

What one candidate needs is the exact engine's batch of states (training always runs there,
:func:`exact_engine_bytes`) and what its target simulates
(:meth:`~qiskit_qnas.targets.ExecutionTarget.memory_bytes`); :func:`check_memory` compares it with
the limit before anything is allocated or written.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from .validation import InvalidArgument, is_integer

#: the units ``max_memory`` strings may use (binary and decimal)
UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
#: peak bytes per amplitude and sample of the exact engine (measured on 18 and 20 qubits: a training
#: step or an evaluation holds about 12 complex, or 24 real, state-sized buffers at once)
EXACT_BYTES_PER_AMPLITUDE = 192
MEMORY_SYNTAX = "None, a number of bytes (int), or a string such as '512MiB', '4GiB', '8GB'"


def parse_memory(value: Any, name: str = "max_memory") -> int | None:
    """``max_memory`` in bytes: None (no cap besides the machine), an int, or ``"<number><unit>"``."""
    if value is None:
        return None
    if is_integer(value):
        if value <= 0:
            raise InvalidArgument(name, value, f"{MEMORY_SYNTAX} (positive)")
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
        unit = (match.group(2).lower() or "b") if match else None
        if match and unit in UNITS:
            number = float(match.group(1)) * UNITS[unit]
            if 0 < number < math.inf:
                return int(number)
    raise InvalidArgument(name, value, MEMORY_SYNTAX)


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps it >= 1 (e.g. ``'8.0 GiB'``)."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if n >= UNITS[unit.lower()]:
            return f"{n / UNITS[unit.lower()]:.1f} {unit}"
    return f"{int(n)} B"


def _cgroup_available() -> int | None:
    """What the cgroup (v2) of this process may still allocate, when it has a limit (containers)."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((root / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes the machine can give this process now (``MemAvailable``, the cgroup limit), or None
    where neither is known."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    cgroup = _cgroup_available()
    if cgroup is not None:
        found.append(cgroup)
    return min(found) if found else None


def memory_limit(max_memory: Any = None) -> tuple[int | None, str]:
    """The limit a search must fit in and where it comes from: the smaller of ``max_memory`` and
    the available memory."""
    cap = parse_memory(max_memory)
    available = available_memory()
    if cap is not None and (available is None or cap <= available):
        return cap, "max_memory"
    return available, "available memory"


def exact_engine_bytes(n_qubits: int, batch: int) -> int:
    """Peak bytes of the exact torch engine (training and evaluation) on ``batch`` states of ``n_qubits``."""
    return 2**int(n_qubits) * int(batch) * EXACT_BYTES_PER_AMPLITUDE


def check_memory(needed: int, what: str, max_memory: Any = None, argument: tuple[str, Any] | None = None) -> None:
    """Raise ``ValueError`` when ``needed`` bytes (for ``what``, e.g. ``"a candidate of 30 qubits on
    target statevector with 16 samples at once"``) exceed the limit (see :func:`memory_limit`);
    ``argument``, the ``(name, value)`` that asks for that much (e.g. ``("qubits", (30, 30))``), makes
    it an :class:`~qiskit_qnas.validation.InvalidArgument` about it (``invalid qubits=(30, 30): ...``)."""
    limit, source = memory_limit(max_memory)
    if limit is None or needed <= limit:
        return
    problem = (f"{what} needs about {format_bytes(needed)} ({needed} bytes), more than the limit of "
               f"{format_bytes(limit)} ({limit} bytes, {source})")
    allowed = (f"fewer qubits, a smaller batch_size or validation split, or "
               f"{'a larger max_memory' if source == 'max_memory' else 'more memory'}")
    if argument is None:
        raise ValueError(f"{problem}; allowed: {allowed}")
    name, value = argument
    raise InvalidArgument(name, value, allowed, context=f": {problem}")
