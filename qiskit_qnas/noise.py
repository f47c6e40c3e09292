"""Noise-adaptive training: a noisy target's gate and readout errors, injected into the torch engine.

:class:`TrainingNoise` turns an :class:`~qiskit_qnas.targets.ExecutionTarget` that runs on a noisy
backend (Aer with a noise model, a fake IBM backend, an IBM backend) into a noisy forward pass for
training (QuantumNAT-style noise injection):

* **where**: the candidate's ISA circuit for the executing backend (``target.run_isa``: the layout,
  routing SWAPs and basis decomposition the target itself will run), restricted to the physical
  qubits it uses;
* **gate errors**: after every ISA gate, its error channel. For the exact simulation (below) on an
  ``AerSimulator`` with a noise model, that is the model's own ``QuantumError`` for the gate and
  qubits (depolarising and thermal relaxation for ``AerSimulator.from_backend``), so the averaged
  channel is the one Aer simulates. Otherwise, with error rate ``r`` on ``k`` qubits, a
  depolarising channel of parameter ``lambda = d r / (d - 1)`` (``d = 2**k``), which is the channel
  ``qiskit_aer.noise.depolarizing_error(lambda, k)`` whose average gate infidelity is ``r``.
  ``r`` is ``1 - average_gate_fidelity`` of the noise model's error for that gate and qubits
  (thermal relaxation included) when the target runs on an ``AerSimulator`` with one, else
  ``backend.target[gate][qubits].error``;
* **what is trained**: the loss of the *averaged* channel's ``<Z_i>``, which is what the noisy
  target measures. By default (``trajectories=None``) it is simulated exactly, as a density matrix
  (:class:`~qiskit_qnas.engines.density_matrix.DensityMatrixProgram`, each gate fused with its
  channel into one superoperator) when the reduced circuit has at most
  ``DENSITY_MATRIX_MAX_QUBITS`` (6) qubits: no sampling variance, and on 4-5 qubit FakeManilaV2
  circuits a training step costs less than a single sampled trajectory. Otherwise (or with
  ``trajectories=K``) the channel is sampled: with probability ``lambda`` a Pauli drawn uniformly
  from all ``4**k`` (the identity included), as an ``RX`` and an ``RZ`` per qubit after the gate
  whose angles are extra per-sample inputs set to 0 or pi (X^a Z^b up to a global phase); every
  sample is replicated ``K`` times in the batch with independent draws from torch's generator and
  its ``K`` read-outs averaged before the head, so the loss is that of a ``K``-trajectory estimate
  of the averaged channel (``K = 1`` would train the mean loss over single trajectories instead,
  where a single Pauli error is a large jolt); ``K`` defaults to :data:`DEFAULT_TRAJECTORIES` (8)
  where the exact simulation is not available. Both programs are compiled once per architecture;
* **readout errors**: exactly, in expectation: a qubit read with ``P(1|0) = e0``, ``P(0|1) = e1``
  reports ``<Z> = (e1 - e0) + (1 - e0 - e1) <Z>`` (the map :class:`~qiskit_qnas.targets.AerTarget`
  applies when it evaluates), at the physical qubit the logical qubit is measured on.

Not modelled: thermal relaxation as such on Runtime / IBM targets and in sampled trajectories (its
infidelity is folded into the depolarising rate, so amplitude damping's pull towards ``|0>`` is not
reproduced there), idle errors and crosstalk (the ISA
circuits are unscheduled, as the targets run them), and coherent errors. QuantumNAT's
post-measurement normalisation is not applied: its per-batch statistics of the read-outs would have
to be taken at inference on the target too, where the model's head reads the target's ``<Z_i>``
directly (:func:`~qiskit_qnas.objectives.evaluate_on_target`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp, average_gate_fidelity

from .circuits import build_circuit
from .engines import StatevectorProgram
from .engines.density_matrix import MAX_QUBITS as DENSITY_MATRIX_MAX_QUBITS
from .engines.density_matrix import DensityMatrixProgram
from .space import Architecture
from .targets import AerTarget, ExecutionTarget, PrimitiveTarget
from .validation import check_int

_NOT_GATES = {"barrier", "delay"}
#: trajectories per sample and step where the averaged channel is not simulated exactly
DEFAULT_TRAJECTORIES = 8
#: gates of ISA circuits the statevector engine runs through their definition
_DECOMPOSED = ["ecr"]


@dataclass(frozen=True)
class NoisyProgram:
    """One architecture's noisy training circuit, compiled.

    ``density`` simulates the averaged channel (every location's channel) exactly;
    ``program`` runs one Pauli trajectory of it per sample: it takes the circuit inputs followed by
    ``n_pauli`` Pauli angles (0 or pi); the Pauli angle column ``c`` belongs to error location
    ``location_of_column[c]``, whose depolarising parameter is ``depolarizing[location]``.
    ``readout_scale`` / ``readout_offset`` map the ``<Z_i>`` of logical qubit i to the value read out.
    """

    program: StatevectorProgram
    density: DensityMatrixProgram | None  # the averaged channel, exactly (None beyond its qubit limit)
    n_circuit_inputs: int
    location_of_column: torch.Tensor  # (n_pauli,) long
    depolarizing: torch.Tensor  # (n_locations,) float64
    readout_scale: torch.Tensor  # (n_qubits,)
    readout_offset: torch.Tensor  # (n_qubits,)
    physical_qubits: tuple[int, ...]  # the backend qubits of the reduced circuit, in its qubit order

    @property
    def n_pauli(self) -> int:
        return int(self.location_of_column.numel())

    def sample_pauli_angles(self, batch: int) -> torch.Tensor:
        """Angles of one trajectory per sample, ``(batch, n_pauli)``: at every location, with
        probability lambda, a uniform Pauli of its qubits (identity included); elsewhere 0."""
        hit = torch.rand(batch, len(self.depolarizing), dtype=torch.float64) < self.depolarizing
        bits = torch.randint(0, 2, (batch, self.n_pauli), dtype=torch.int64).bool()
        return math.pi * (bits & hit[:, self.location_of_column]).to(torch.float64)

    def expectation(self, inputs: torch.Tensor, weights: torch.Tensor,
                    pauli_angles: torch.Tensor | None = None) -> torch.Tensor:
        """Read-out ``<Z_i>`` of one trajectory per sample (``pauli_angles`` sampled when None)."""
        inputs = torch.as_tensor(inputs, dtype=torch.float64)
        if pauli_angles is None:
            pauli_angles = self.sample_pauli_angles(inputs.shape[0])
        z = self.program.expectation(torch.cat([inputs, pauli_angles.to(torch.float64)], 1), weights)
        return self.readout_offset + self.readout_scale * z

    def trajectory_mean(self, inputs: torch.Tensor, weights: torch.Tensor, n_trajectories: int) -> torch.Tensor:
        """Read-out ``<Z_i>`` averaged over ``n_trajectories`` independent trajectories per sample
        (each sample replicated inside one batch), ``(B, n_qubits)``."""
        inputs = torch.as_tensor(inputs, dtype=torch.float64)
        values = self.expectation(inputs.repeat_interleave(int(n_trajectories), 0), weights)
        return values.reshape(inputs.shape[0], int(n_trajectories), -1).mean(1)

    def averaged_expectation(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Read-out ``<Z_i>`` of the averaged noisy channel, exactly (density-matrix simulation)."""
        if self.density is None:
            raise ValueError(f"the exact averaged channel is simulated up to {DENSITY_MATRIX_MAX_QUBITS} "
                             f"physical qubits; this circuit uses {len(self.physical_qubits)}: use trajectories")
        return self.readout_offset + self.readout_scale * self.density.expectation(inputs, weights)


def depolarizing_parameter(error_rate: float, n_qubits: int) -> float:
    """The ``depolarizing_error`` parameter whose average gate infidelity is ``error_rate``
    (``d r / (d - 1)``, capped at the fully depolarising-plus-twirl bound ``4**k / (4**k - 1)``)."""
    d = 2**n_qubits
    return float(min(max(error_rate, 0.0) * d / (d - 1), 4**n_qubits / (4**n_qubits - 1)))


class _ErrorRates:
    """Gate error rates (average infidelities) and readout errors of a target's executing backend."""

    def __init__(self, target: PrimitiveTarget):
        backend = target.run_backend
        self.noise_model = getattr(getattr(backend, "options", None), "noise_model", None)
        self.backend_target = getattr(backend, "target", None)
        self._cache: dict[tuple, float] = {}
        self._channels: dict[tuple, object] = {}
        if isinstance(target, AerTarget):
            self.readout = target.readout_errors() if target.readout_error else {}
        else:  # Runtime: the backend's calibrated measurement error, symmetric (as Aer models it)
            self.readout = {}
            if self.backend_target is not None and "measure" in self.backend_target.operation_names:
                for qargs, props in self.backend_target["measure"].items():
                    error = getattr(props, "error", None)
                    if qargs is not None and len(qargs) == 1 and error:
                        self.readout[int(qargs[0])] = (float(error), float(error))

    def gate(self, name: str, qubits: tuple[int, ...]) -> float:
        key = (name, qubits)
        if key not in self._cache:
            self._cache[key] = self._model_error(name, qubits) if self.noise_model is not None \
                else self._target_error(name, qubits)
        return self._cache[key]

    def model_channel(self, name: str, qubits: tuple[int, ...]):
        """The simulator's noise-model error after gate ``name`` on ``qubits`` as a quantum channel
        (the ``QuantumError``'s ``to_quantumchannel()``, converted once per gate and qubits; None
        without a noise model or without an error there)."""
        if self.noise_model is None:
            return None
        key = (name, qubits)
        if key not in self._channels:
            # Aer offers no public per-gate lookup: these are the model's own tables (local errors
            # take precedence over all-qubit ones, as when Aer applies them)
            error = self.noise_model._local_quantum_errors.get(name, {}).get(qubits)
            error = self.noise_model._default_quantum_errors.get(name) if error is None else error
            # the conversion took 98% of compiling a member's noisy program (3.1 s for the 87 gates
            # with an error among a 4-layer ring's 122), and a SuperCircuit compiles one per member
            self._channels[key] = None if error is None else error.to_quantumchannel()
        return self._channels[key]

    def _model_error(self, name: str, qubits: tuple[int, ...]) -> float:
        error = self.model_channel(name, qubits)
        return 0.0 if error is None else float(1.0 - average_gate_fidelity(error))

    def _target_error(self, name: str, qubits: tuple[int, ...]) -> float:
        if self.backend_target is None or name not in self.backend_target.operation_names:
            return 0.0
        props = self.backend_target[name].get(qubits)
        error = getattr(props, "error", None)
        return float(error) if error else 0.0

    def readout_pair(self, qubit: int) -> tuple[float, float]:
        return self.readout.get(qubit, self.readout.get(-1, (0.0, 0.0)))

    def any_noise(self) -> bool:
        if self.noise_model is not None:
            return not self.noise_model.is_ideal()
        if self.backend_target is None:
            return False
        return any(getattr(props, "error", None) for name in self.backend_target.operation_names
                   for props in (self.backend_target[name].values() if self.backend_target[name] else ())
                   if props is not None)


def check_noise_aware_target(target: ExecutionTarget) -> None:
    """Raise ``ValueError`` unless ``target`` runs on a backend with errors to inject."""
    if target.exact or not isinstance(target, PrimitiveTarget) or target.run_backend is None:
        raise ValueError(f"invalid noise_aware=True with target {target.name!r} (no device noise to inject); "
                         f"allowed: noise_aware=False, or a noisy backend: an AerSimulator with a noise model "
                         f"(e.g. AerSimulator.from_backend(FakeManilaV2())), a fake IBM backend or an IBMBackend")
    if not _ErrorRates(target).any_noise():
        raise ValueError(f"invalid noise_aware=True with target {target.name!r}: its backend reports no gate or "
                         f"readout errors; allowed: noise_aware=False, or a backend with a noise model")


class TrainingNoise:
    """The errors of ``target``'s backend, injected into the torch engine (see the module docstring).

    ``trajectories``: None (default) trains on the averaged channel simulated exactly (density
    matrix, circuits of at most ``DENSITY_MATRIX_MAX_QUBITS`` qubits; wider ones fall back to
    :data:`DEFAULT_TRAJECTORIES` trajectories), ``K >= 1`` on the mean of ``K`` sampled trajectories
    per sample. A :class:`~qiskit_qnas.supercircuit.SuperCircuit` whose ``noise`` is set trains
    through :meth:`expectation`; evaluation is unchanged.
    Shared, not copied, by ``copy.deepcopy`` (the fine-tuning copies of a SuperCircuit); picklable
    (the compiled programs are rebuilt).
    """

    def __init__(self, target: ExecutionTarget, trajectories: int | None = None):
        check_int("trajectories", trajectories, 1, allow_none=True,
                  allowed=f"None (the averaged channel, exactly where the circuit has at most "
                          f"{DENSITY_MATRIX_MAX_QUBITS} qubits) or an integer >= 1")
        check_noise_aware_target(target)
        assert isinstance(target, PrimitiveTarget)  # what the check above requires
        self.target: PrimitiveTarget = target
        self.trajectories = None if trajectories is None else int(trajectories)
        self._init_caches()

    def _init_caches(self) -> None:
        self._lock = threading.Lock()
        self._programs: dict[Architecture, NoisyProgram] = {}
        self._rates = _ErrorRates(self.target)

    def __getstate__(self) -> dict:
        return {"target": self.target, "trajectories": self.trajectories}

    def __setstate__(self, state: dict) -> None:
        self.target = state["target"]
        self.trajectories = state.get("trajectories")
        self._init_caches()

    def __deepcopy__(self, memo) -> TrainingNoise:
        return self

    def __repr__(self) -> str:
        return f"TrainingNoise(target={self.target.name!r}, trajectories={self.trajectories!r})"

    def program(self, arch: Architecture) -> NoisyProgram:
        """The compiled noisy training circuit of ``arch`` (cached)."""
        with self._lock:
            found = self._programs.get(arch)
        if found is None:
            found = self._compile(arch)
            with self._lock:
                found = self._programs.setdefault(arch, found)
        return found

    def _compile(self, arch: Architecture) -> NoisyProgram:
        built = build_circuit(arch)
        isa, _ = self.target.run_isa(arch)
        layout = isa.layout
        measured = list(layout.final_index_layout()[: arch.n_qubits]) if layout is not None \
            else list(range(arch.n_qubits))
        steps = [(inst.operation, tuple(isa.find_bit(q).index for q in inst.qubits)) for inst in isa.data
                 if inst.operation.name not in _NOT_GATES]
        physical = sorted({q for _, qubits in steps for q in qubits} | set(measured))
        local = {q: k for k, q in enumerate(physical)}

        def observables(physical: list[int]) -> list[SparsePauliOp]:  # Z of every measured qubit
            return [SparsePauliOp.from_sparse_list([("Z", [local[q]], 1.0)], len(physical)) for q in measured]

        locations = [(operation, qubits, depolarizing_parameter(self._rates.gate(operation.name, qubits),
                                                                len(qubits))) for operation, qubits in steps]
        density = None
        if len(physical) <= DENSITY_MATRIX_MAX_QUBITS:
            reduced = QuantumCircuit(len(physical))
            for operation, qubits, _ in locations:
                reduced.append(operation, [local[q] for q in qubits])
            # after instruction k: an Aer noise model's own error channel (thermal relaxation and
            # all), else the depolarising channel of the Target's error rate
            channels = {}
            for k, (operation, qubits, lam) in enumerate(locations):
                model_error = self._rates.model_channel(operation.name, qubits)
                if model_error is not None:
                    channels[k] = model_error
                elif lam > 0:
                    channels[k] = lam
            density = DensityMatrixProgram(reduced, list(built.inputs), list(built.weights), channels,
                                           observables(physical))
        n_pauli = 2 * sum(len(qubits) for _, qubits, lam in locations if lam > 0)
        pauli = ParameterVector("pauli", n_pauli)
        circuit = QuantumCircuit(len(physical))
        column_locations: list[int] = []  # per Pauli column: the index of its error's lambda
        lambdas: list[float] = []
        for operation, qubits, lam in locations:
            circuit.append(operation, [local[q] for q in qubits])
            if lam <= 0:
                continue
            for q in qubits:
                column = len(column_locations)
                circuit.rx(pauli[column], local[q])
                circuit.rz(pauli[column + 1], local[q])
                column_locations += [len(lambdas)] * 2
            lambdas.append(lam)
        if any(operation.name in _DECOMPOSED for operation, _ in steps):
            circuit = circuit.decompose(gates_to_decompose=_DECOMPOSED)
        program = StatevectorProgram(circuit, list(built.inputs) + list(pauli), list(built.weights),
                                     observables(physical))
        e0, e1 = np.array([self._rates.readout_pair(q) for q in measured], dtype=np.float64).reshape(-1, 2).T
        return NoisyProgram(program=program, density=density, n_circuit_inputs=arch.n_inputs,
                            location_of_column=torch.tensor(column_locations, dtype=torch.long),
                            depolarizing=torch.tensor(lambdas, dtype=torch.float64),
                            readout_scale=torch.as_tensor(1.0 - e0 - e1), readout_offset=torch.as_tensor(e1 - e0),
                            physical_qubits=tuple(physical))

    def expectation(self, arch: Architecture, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Read-out ``<Z_i>`` of ``arch`` under the injected noise, ``(B, n_qubits)``, differentiable
        in ``inputs`` (circuit input angles) and ``weights``: the averaged channel's (what the target
        measures), exactly when ``trajectories`` is None and the circuit is narrow enough, else the
        mean over ``trajectories`` (default :data:`DEFAULT_TRAJECTORIES`) sampled trajectories per sample."""
        noisy = self.program(arch)
        if self.trajectories is None and noisy.density is not None:
            return noisy.averaged_expectation(inputs, weights)
        return noisy.trajectory_mean(inputs, weights, self.trajectories or DEFAULT_TRAJECTORIES)

    @torch.no_grad()
    def exact_average(self, arch: Architecture, inputs, weights) -> np.ndarray:
        """Read-out ``<Z_i>`` of the averaged channel, exactly (density matrix), ``(N, n_qubits)``."""
        return self.program(arch).averaged_expectation(torch.as_tensor(np.asarray(inputs, dtype=np.float64)),
                                                       torch.as_tensor(np.asarray(weights, dtype=np.float64))).numpy()

    @torch.no_grad()
    def average_expectation(self, arch: Architecture, inputs, weights, n_trajectories: int = 1000,
                            generator_seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
        """Mean read-out ``<Z_i>`` over ``n_trajectories`` sampled trajectories per sample and its
        standard error, both ``(N, n_qubits)``: the sampled noise's average effect."""
        check_int("n_trajectories", n_trajectories, 2)
        noisy = self.program(arch)
        inputs = torch.as_tensor(np.asarray(inputs, dtype=np.float64))
        weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        with torch.random.fork_rng():
            if generator_seed is not None:
                torch.manual_seed(int(generator_seed))
            values = noisy.expectation(inputs.repeat_interleave(int(n_trajectories), 0), weights)
        samples = values.reshape(len(inputs), int(n_trajectories), -1).numpy()
        return samples.mean(1), samples.std(1, ddof=1) / math.sqrt(n_trajectories)


__all__ = ["DEFAULT_TRAJECTORIES", "NoisyProgram", "TrainingNoise", "check_noise_aware_target",
           "depolarizing_parameter"]
