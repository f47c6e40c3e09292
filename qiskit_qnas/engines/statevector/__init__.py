"""An exact, batched, differentiable statevector simulator in torch, compiled from a ``QuantumCircuit``.

The compiler (:mod:`.program`) walks the circuit instruction by instruction, so what is simulated is
exactly the circuit that would be transpiled and run on hardware. Speed comes from these facts:

* until a qubit meets a multi-qubit gate its state is a 2-vector: the leading one-qubit gates (the
  embedding and the first rotation block) build a product state, all qubits at once (:mod:`.program`);
* states are amplitude-major, (2**n, B): runs of parameter-free permutation gates (CX, X, SWAP,
  CCX) are fused into one row gather, and a gate whose angle is shared by the batch (weights,
  constants) is one 2 x 2 matmul; only input-dependent angles are per-sample elementwise ops;
  diagonal gates (RZZ, CZ) are elementwise phase products (:mod:`.gates`);
* circuits made only of real gates (RY, CX, H, ...) are simulated in float64, not complex128;
* per-sample Jacobians of all observables (what ``TorchConnector`` asks a ``NeuralNetwork`` for)
  come from the adjoint method: one backward sweep un-computes the state gate by gate while it
  carries the K cotangent states O_k psi, so nothing is stored per gate (:mod:`.adjoint`); the
  angle table's derivatives are a constant matrix (parameters, affine expressions) or autograd
  (other expressions) (:mod:`.expressions`). Training needs only the vector-Jacobian product with
  the incoming gradient g, whose sweep carries the one cotangent state (sum_k g_k O_k) psi
  (:meth:`StatevectorProgram.vjp`);
* a state preparation declared as data (:class:`RYTreePreparation`, the amplitude embedding's tree of
  uniformly controlled RY rotations) starts the sweep from its closed-form state instead of its
  gates (2**n - 1 per-sample RY and 2**(n+1) - 2n - 2 CX at n qubits), differentiated through that
  closed form (:mod:`.preparation`);
* small simulations run on one torch thread (:mod:`.threads`).

Expectation values of diagonal (I/Z) observables are one reduction of the probabilities.
"""

from __future__ import annotations

# re-exported for the density-matrix engine, which reads gate parameters the same way
from .preparation import RYTreePreparation
from .program import StatevectorProgram
from .threads import SINGLE_THREAD_BELOW, torch_threads_for

__all__ = ["SINGLE_THREAD_BELOW", "RYTreePreparation", "StatevectorProgram", "torch_threads_for"]
