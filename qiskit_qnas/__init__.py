"""qiskit-qnas: quantum neural architecture search for Qiskit.

Train one weight-sharing SuperCircuit of hybrid quantum-classical networks, then search its
sub-architectures with NSGA-II on validation error, runtime on IBM hardware and circuit-cutting cost.

The public names load on first use (PEP 562): importing the package is instant, so the ``qnas`` command
answers Ctrl-C from its first moment, before torch and Qiskit are imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .estimator import QNASEstimator
    from .result import Candidate, SearchResult
    from .space import EMBEDDINGS, ENTANGLERS, ROTATIONS, Architecture, SearchSpace

#: each public name and the module that defines it
_EXPORTS = {"QNASEstimator": "estimator", "Candidate": "result", "SearchResult": "result", "EMBEDDINGS": "space",
            "ENTANGLERS": "space", "ROTATIONS": "space", "Architecture": "space", "SearchSpace": "space"}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = ["EMBEDDINGS", "ENTANGLERS", "ROTATIONS", "Architecture", "Candidate", "QNASEstimator", "SearchResult",
           "SearchSpace", "__version__"]
