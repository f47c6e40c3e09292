"""qiskit-qnas: quantum neural architecture search for Qiskit.

Train one weight-sharing SuperCircuit of hybrid quantum-classical networks, then search its
sub-architectures with NSGA-II on validation error, runtime on IBM hardware and circuit-cutting cost.
"""

from ._version import __version__
from .estimator import QNASEstimator
from .result import Candidate, SearchResult
from .space import EMBEDDINGS, ENTANGLERS, ROTATIONS, Architecture, SearchSpace

__all__ = ["EMBEDDINGS", "ENTANGLERS", "ROTATIONS", "Architecture", "Candidate", "QNASEstimator", "SearchResult",
           "SearchSpace", "__version__"]
