"""Execution targets: where a candidate's quantum layer is evaluated, and what running it would cost.

:func:`resolve_target` turns the user's ``backend=`` into an :class:`ExecutionTarget`:

* ``None`` -> :class:`ExactTarget`: exact, batched statevector simulation in torch
  (:class:`~qiskit_qnas.engines.StatevectorProgram`, one compiled program per architecture);
* a ``qiskit_aer.AerSimulator`` (with or without a noise model, e.g.
  ``AerSimulator.from_backend(FakeManilaV2())``) -> :class:`AerTarget`:
  ``qiskit_aer.primitives.EstimatorV2`` (exact noisy expectation values), plus the noise model's
  readout errors and binomial shot sampling when ``shots`` is set;
* a fake IBM backend (``qiskit_ibm_runtime.fake_provider``) -> :class:`RuntimeTarget` in Runtime's
  local testing mode (``mode="runtime"``, the default) or :class:`AerTarget` on
  ``AerSimulator.from_backend(backend)`` (``mode="aer"``);
* an ``IBMBackend`` -> :class:`RuntimeTarget`: the client-side
  ``qiskit_ibm_runtime.executor_estimator.Estimator`` inside a Runtime ``Batch`` (a ``Session`` with
  ``session=True``), ``resilience_level`` set explicitly (default 0), and Runtime's error
  suppression and mitigation settings from ``runtime_options`` (:func:`check_runtime_options`).

Every primitive call sends **one PUB**: the candidate's ISA circuit (``generate_preset_pass_manager``
for the executing backend, fixed ``seed_transpiler``), the observables ``Z_i`` with the layout
applied, shaped ``(n_qubits, 1)``, and the parameter values of all N samples, shaped
``(N, n_parameters)`` in the ISA circuit's parameter order; the result ``(n_qubits, N)`` is returned
transposed. Failed submissions or results are retried with exponential backoff; after the last
retry :class:`TargetError` is raised with the original error chained.

The runtime proxy (:meth:`ExecutionTarget.runtime_estimate`) is the ASAP schedule of the ISA
circuit over the reference backend's durations (:mod:`qiskit_qnas.runtime_proxy`, which states the
formula); on a :class:`RuntimeTarget` it counts the executions the Runtime options add
(:meth:`RuntimeTarget.mitigation_plan`, :mod:`qiskit_qnas.runtime_options`).
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from .backends import backend_name, backend_qubits, is_aer_simulator, is_fake_backend, is_ibm_backend
from .circuits import build_circuit, compiled_program, z_observables
from .engines import StatevectorProgram
from .engines.statevector import torch_threads_for
from .isa import to_isa
from .memory import exact_engine_bytes
from .runtime_options import (
    DD_KEYS,
    DD_SEQUENCES,
    RUNTIME_OPTION_KEYS,
    TWIRLING_KEYS,
    MitigationPlan,
    build_estimator_options,
    check_runtime_options,
    resolve_mitigation_plan,
)
from .runtime_proxy import (
    DEFAULT_JOB_OVERHEAD,
    DEFAULT_PROXY_SHOTS,
    DEFAULT_REP_DELAY,
    FALLBACK_DURATIONS,
    RuntimeEstimate,
    Schedule,
    backend_rep_delay,
    estimate_runtime,
    schedule,
    typical_durations,
)
from .seeds import simulator_seed
from .space import Architecture
from .validation import InvalidArgument, check_choice, check_int, check_number, check_parameter_values

if TYPE_CHECKING:
    from qiskit.primitives import BaseEstimatorV2
    from qiskit.providers import BackendV2

#: shots per circuit on Runtime targets when ``shots=None`` (Runtime's default precision 1/64)
DEFAULT_RUNTIME_SHOTS = 4096
MODES = ("auto", "exact", "aer", "runtime")
#: shots of an Aer run that sets none (Aer's default): with a noise model, Aer's automatic method
#: simulates the density matrix only when the shots exceed 2**n, else one statevector per shot
AER_DEFAULT_SHOTS = 1024


class TargetError(RuntimeError):
    """A target failed to evaluate a candidate after every retry (the last error is ``__cause__``)."""

    def __init__(self, message: str, attempts: int = 1):
        super().__init__(message)
        self.attempts = attempts


@dataclass
class Evaluation:
    """``<Z_i>`` of N samples, and what the evaluation cost."""

    values: np.ndarray  # (N, n_qubits)
    wall_seconds: float  # client wall clock of the call (retries and backoff included)
    job_seconds: float | None  # what the simulator / service reports, when it does
    attempts: int = 1


@lru_cache(maxsize=1)
def default_reference_backend() -> BackendV2:
    """The backend the exact target's ISA circuits and durations come from: ``FakeTorino``
    (133-qubit IBM Heron, CZ basis, calibrated durations)."""
    from qiskit_ibm_runtime.fake_provider import FakeTorino

    return FakeTorino()


def _check_arch(arch) -> Architecture:
    if not isinstance(arch, Architecture):
        raise TypeError(f"invalid arch={arch!r}; allowed: a qiskit_qnas.Architecture")
    return arch


# ------------------------------------------------------------------------------------------------
# the base class: ISA circuits, width check and the runtime proxy
# ------------------------------------------------------------------------------------------------
class ExecutionTarget:
    """Where a candidate's quantum layer is evaluated.

    Attributes:
        name: e.g. ``"statevector"``, ``"aer:fake_manila"``, ``"runtime-local:fake_manila"``,
            ``"ibm:ibm_torino"``.
        exact: True only for the exact statevector target.
        num_qubits: widest circuit the target runs (None: no limit).
        backend: the reference ``BackendV2`` of :meth:`isa` circuits and of the proxy's durations.
        shots: shots per circuit (None: exact expectation values).
        seed: seed of shot noise (None: random).
        optimization_level: preset pass manager level of the ISA circuits.
        per_circuit_overhead: seconds added to the proxy per circuit (0 by default).
        rep_delay: seconds after every shot in the runtime objective (None: the backend's
            ``default_rep_delay``, else :data:`~qiskit_qnas.runtime_proxy.DEFAULT_REP_DELAY`).
        job_overhead: fixed seconds of QPU time per job in the runtime objective.
    """

    exact: bool = False
    #: True where evaluations are billed device time: IBM Runtime (also its local testing mode, which
    #: stands for the device): the QPU budget counts them (:mod:`qiskit_qnas.qpu_budget`)
    on_device: bool = False

    def __init__(self, backend, *, name: str, num_qubits: int | None, shots: int | None = None,
                 seed: int | None = None, optimization_level: int = 1, per_circuit_overhead: float = 0.0,
                 rep_delay: float | None = None, job_overhead: float = DEFAULT_JOB_OVERHEAD):
        check_number("rep_delay", rep_delay, 0, high_inclusive=False, allow_none=True,
                     allowed="None (the backend's default_rep_delay) or a number of seconds >= 0")
        check_number("job_overhead", job_overhead, 0, high_inclusive=False, allowed="a number of seconds >= 0")
        self.rep_delay = None if rep_delay is None else float(rep_delay)
        self.job_overhead = float(job_overhead)
        self.backend = backend
        self.name = name
        self.num_qubits = num_qubits
        self.shots = shots
        self.seed = seed
        self.optimization_level = optimization_level
        self.per_circuit_overhead = float(per_circuit_overhead)
        self._init_caches()

    def _init_caches(self) -> None:
        self._lock = threading.RLock()
        self._isa: dict[tuple, tuple[QuantumCircuit, list[SparsePauliOp]]] = {}
        self._schedules: dict[Architecture, Schedule] = {}
        self._typical: dict | None = None

    # caches, locks, primitives and Runtime sessions are rebuilt after unpickling (process pools, Dask)
    _TRANSIENT: tuple[str, ...] = ("_lock", "_isa", "_schedules", "_typical")

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_caches()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, shots={self.shots}, seed={self.seed})"

    def with_shots(self, shots: int) -> ExecutionTarget:
        """A copy of this target that runs ``shots`` per circuit (its own primitive and Runtime
        ``Batch``, opened on first use: :meth:`close` it)."""
        check_int("shots", shots, 1)
        clone = type(self).__new__(type(self))
        clone.__setstate__(self.__getstate__())
        clone.shots = int(shots)
        return clone

    # --- width -------------------------------------------------------------------------------
    def check_width(self, arch_or_n_qubits, what: str = "candidate") -> None:
        """Raise ``ValueError`` when a candidate (or a width) does not fit the target's backend."""
        n = arch_or_n_qubits.n_qubits if isinstance(arch_or_n_qubits, Architecture) else int(arch_or_n_qubits)
        limits = [(self.num_qubits, backend_name(getattr(self, "run_backend", None) or self.backend))]
        ref = backend_qubits(self.backend)
        if ref is not None:
            limits.append((ref, f"{backend_name(self.backend)} (reference for ISA circuits)"))
        for limit, limiting in limits:
            if limit is not None and n > limit:
                subject = what if f"{n} qubits" in what else f"{what} with {n} qubits"
                raise ValueError(f"{subject} does not fit backend {limiting} with {limit} qubits; "
                                 f"allowed: at most {limit} qubits")

    # --- ISA circuits ------------------------------------------------------------------------
    def _transpile(self, arch: Architecture, backend) -> tuple[QuantumCircuit, list[SparsePauliOp]]:
        key = (arch, backend_name(backend), id(backend), self.optimization_level)
        with self._lock:
            cached = self._isa.get(key)
        if cached is not None:
            return cached
        isa = to_isa(build_circuit(arch).circuit, backend, self.optimization_level)
        observables = [o.apply_layout(isa.layout) for o in z_observables(arch.n_qubits)]
        with self._lock:
            return self._isa.setdefault(key, (isa, observables))

    def isa(self, arch: Architecture) -> tuple[QuantumCircuit, list[SparsePauliOp]]:
        """The ISA circuit of ``arch`` on :attr:`backend` and its ``Z_i`` observables (layout
        applied), cached per (architecture, backend, optimization level). Do not modify them."""
        arch = _check_arch(arch)
        self.check_width(arch)
        return self._transpile(arch, self.backend)

    # --- runtime proxy -----------------------------------------------------------------------
    @property
    def proxy_shots(self) -> int:
        return int(self.shots) if self.shots else DEFAULT_PROXY_SHOTS

    def _typical_durations(self) -> dict:
        if self._typical is None:
            self._typical = typical_durations(self.backend)
        return self._typical

    def _schedule(self, arch: Architecture) -> Schedule:
        with self._lock:
            cached = self._schedules.get(arch)
        if cached is not None:
            return cached
        isa, _ = self.isa(arch)
        path = schedule(isa, arch.n_qubits, self.backend, self._typical_durations())
        with self._lock:
            return self._schedules.setdefault(arch, path)

    def shot_delay(self) -> float:
        """Seconds after every shot: ``rep_delay`` when set, else the backend's ``default_rep_delay``
        (the executing backend's, then the reference backend's), else
        :data:`~qiskit_qnas.runtime_proxy.DEFAULT_REP_DELAY`."""
        if self.rep_delay is not None:
            return self.rep_delay
        for backend in (getattr(self, "run_backend", None), self.backend):
            found = None if backend is None else backend_rep_delay(backend)
            if found is not None:
                return found
        return DEFAULT_REP_DELAY

    def runtime_estimate(self, arch: Architecture, n_circuits: int = 1, *, shots: int | None = None,
                         n_jobs: int | None = None) -> RuntimeEstimate:
        """The device seconds of evaluating ``arch`` on ``n_circuits`` parameter sets in ``n_jobs``
        jobs (default one) with ``shots`` per circuit (default the target's), as IBM bills them
        (:mod:`qiskit_qnas.runtime_proxy` states the formula; deterministic)."""
        arch = _check_arch(arch)
        check_int("n_circuits", n_circuits, 0)
        check_int("shots", shots, 1, allow_none=True)
        check_int("n_jobs", n_jobs, 0, allow_none=True)
        path = self._schedule(arch)
        shots = self.proxy_shots if shots is None else int(shots)
        executions, calibration = self._executions(shots)
        return estimate_runtime(path, shots=shots, n_circuits=int(n_circuits), backend_name=backend_name(self.backend),
                                executions=executions, calibration=calibration,
                                per_circuit_overhead=self.per_circuit_overhead, rep_delay=self.shot_delay(),
                                n_jobs=n_jobs, job_overhead=self.job_overhead)

    def _executions(self, shots: int) -> tuple[int, int]:
        """(shots run per parameter set, readout-calibration shots per evaluation): plain shots here."""
        return shots, 0

    # --- evaluation --------------------------------------------------------------------------
    def _check_data(self, arch: Architecture, inputs, weights) -> tuple[np.ndarray, np.ndarray]:
        context = f" for {arch.key}"
        return (check_parameter_values("inputs", inputs, arch.n_inputs, rows=True, allow_empty=True, context=context),
                check_parameter_values("weights", np.ravel(weights), arch.n_weights, rows=False, context=context))

    def expectation_values(self, arch: Architecture, inputs: np.ndarray, weights: np.ndarray) -> Evaluation:
        """``<Z_i>`` for every logical qubit i of ``arch``, shape ``(N, arch.n_qubits)``, given
        circuit input angles ``inputs`` ``(N, arch.n_inputs)`` and weights ``(arch.n_weights,)``."""
        raise NotImplementedError

    def memory_bytes(self, n_qubits: int, batch: int) -> int:
        """Bytes this process needs to evaluate a candidate of ``n_qubits`` on ``batch`` samples at
        once (0: nothing is simulated here, e.g. a remote backend or a primitive of your own)."""
        return 0

    def close(self) -> None:
        """Release what the target holds open (a Runtime ``Batch``/``Session``); idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# exact
# ------------------------------------------------------------------------------------------------
class ExactTarget(ExecutionTarget):
    """Exact expectation values from the batched torch statevector engine (no width limit besides
    memory); ISA circuits and durations for the proxy come from ``reference_backend``
    (default :func:`default_reference_backend`)."""

    exact = True

    def __init__(self, reference_backend=None, *, optimization_level: int = 1, per_circuit_overhead: float = 0.0,
                 rep_delay: float | None = None, job_overhead: float = DEFAULT_JOB_OVERHEAD):
        super().__init__(reference_backend if reference_backend is not None else default_reference_backend(),
                         name="statevector", num_qubits=None, optimization_level=optimization_level,
                         per_circuit_overhead=per_circuit_overhead, rep_delay=rep_delay, job_overhead=job_overhead)

    def check_width(self, arch_or_n_qubits, what: str = "candidate") -> None:
        """No width limit: simulation is exact. (The proxy's ISA circuits need the reference backend
        to be wide enough; :meth:`isa` checks that.)"""
        int(arch_or_n_qubits.n_qubits if isinstance(arch_or_n_qubits, Architecture) else arch_or_n_qubits)

    def isa(self, arch: Architecture) -> tuple[QuantumCircuit, list[SparsePauliOp]]:
        arch = _check_arch(arch)
        ExecutionTarget.check_width(self, arch, what="candidate (ISA circuit for the runtime proxy)")
        return self._transpile(arch, self.backend)

    def program(self, arch: Architecture) -> StatevectorProgram:
        """The compiled :class:`~qiskit_qnas.engines.StatevectorProgram` of ``arch``
        (:func:`~qiskit_qnas.circuits.compiled_program`, cached per process)."""
        return compiled_program(arch)

    def memory_bytes(self, n_qubits: int, batch: int) -> int:
        """The engine's batch of ``batch`` states of ``2**n_qubits`` amplitudes and its temporaries."""
        return exact_engine_bytes(n_qubits, batch)

    def expectation_values(self, arch: Architecture, inputs: np.ndarray, weights: np.ndarray) -> Evaluation:
        import torch

        arch = _check_arch(arch)
        started = time.perf_counter()
        x, w = self._check_data(arch, inputs, weights)
        program = self.program(arch)
        with torch.no_grad(), torch_threads_for(len(x) * program.dim):
            values = program.expectation(torch.as_tensor(x), torch.as_tensor(w)).numpy()
        return Evaluation(values=np.asarray(values, dtype=np.float64).reshape(len(x), arch.n_qubits),
                          wall_seconds=time.perf_counter() - started, job_seconds=None)


# ------------------------------------------------------------------------------------------------
# primitives: Aer and Runtime
# ------------------------------------------------------------------------------------------------
def _parameter_columns(circuit: QuantumCircuit) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where each circuit parameter's value comes from: positions of ``x[i]`` and ``w[j]`` columns
    in ``circuit.parameters`` order (sorted by name, so not x then w), and i and j."""
    x_pos, x_idx, w_pos, w_idx = [], [], [], []
    for position, parameter in enumerate(circuit.parameters):
        vector = getattr(parameter, "vector", None)
        name = getattr(vector, "name", None)
        if name == "x":
            x_pos.append(position)
            x_idx.append(parameter.index)
        elif name == "w":
            w_pos.append(position)
            w_idx.append(parameter.index)
        else:
            raise ValueError(f"circuit parameter {parameter.name!r} is neither an input x[i] nor a weight w[j]")
    return (np.asarray(x_pos, dtype=np.int64), np.asarray(x_idx, dtype=np.int64), np.asarray(w_pos, dtype=np.int64),
            np.asarray(w_idx, dtype=np.int64))


def parameter_values(circuit: QuantumCircuit, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The ``(N, circuit.num_parameters)`` parameter values of a PUB, in the circuit's parameter order."""
    x_pos, x_idx, w_pos, w_idx = _parameter_columns(circuit)
    values = np.empty((len(inputs), circuit.num_parameters), dtype=np.float64)
    values[:, x_pos] = inputs[:, x_idx]
    values[:, w_pos] = weights[w_idx]
    return values


class PrimitiveTarget(ExecutionTarget):
    """Expectation values from a Qiskit ``EstimatorV2`` primitive: one broadcast PUB per call,
    retried on failure.

    Args:
        run_backend: the backend the primitive executes on (circuits are transpiled for it); None
            sends the logical circuit (an estimator without a backend, e.g. ``StatevectorEstimator``).
        estimator: a ``BaseEstimatorV2`` to use instead of the target's own (e.g. a legacy
            ``qiskit_ibm_runtime.EstimatorV2``, or one configured by hand); used as given.
        max_retries: retries after a failed attempt (so at most ``max_retries + 1`` attempts).
        retry_backoff: seconds before the first retry, doubled for every further one.
        job_timeout: seconds passed to ``job.result(timeout=...)`` where the job accepts it.
    """

    _TRANSIENT = (*ExecutionTarget._TRANSIENT, "_primitive")

    def __init__(self, reference_backend, *, run_backend=None, estimator=None, name: str,
                 num_qubits: int | None, shots: int | None = None, seed: int | None = None,
                 optimization_level: int = 1, max_retries: int = 3, retry_backoff: float = 1.0,
                 job_timeout: float | None = None, per_circuit_overhead: float = 0.0, rep_delay: float | None = None,
                 job_overhead: float = DEFAULT_JOB_OVERHEAD):
        self.run_backend = run_backend
        self.estimator = estimator
        self.max_retries = int(max_retries)
        self.retry_backoff = float(retry_backoff)
        self.job_timeout = job_timeout
        super().__init__(reference_backend, name=name, num_qubits=num_qubits, shots=shots, seed=seed,
                         optimization_level=optimization_level, per_circuit_overhead=per_circuit_overhead,
                         rep_delay=rep_delay, job_overhead=job_overhead)

    def _init_caches(self) -> None:
        super()._init_caches()
        self._primitive = None

    # --- what is sent ------------------------------------------------------------------------
    def run_isa(self, arch: Architecture) -> tuple[QuantumCircuit, list[SparsePauliOp]]:
        """The circuit and observables sent to the primitive (ISA for the executing backend)."""
        arch = _check_arch(arch)
        self.check_width(arch)
        if self.run_backend is None:
            return build_circuit(arch).circuit, z_observables(arch.n_qubits)
        return self._transpile(arch, self.run_backend)

    def pub(self, arch: Architecture, inputs: np.ndarray, weights: np.ndarray) -> tuple:
        """The one PUB of an evaluation: (circuit, observables ``(n, 1)``, values ``(N, n_params)``)."""
        arch = _check_arch(arch)
        x, w = self._check_data(arch, inputs, weights)
        circuit, observables = self.run_isa(arch)
        return circuit, [[o] for o in observables], parameter_values(circuit, x, w)

    # --- the primitive -----------------------------------------------------------------------
    def _make_estimator(self):
        raise NotImplementedError

    def primitive(self):
        """The estimator calls go to: the one given, or the target's own (created on first use)."""
        if self.estimator is not None:
            return self.estimator
        with self._lock:
            if self._primitive is None:
                self._primitive = self._make_estimator()
            return self._primitive

    def _reset_primitive(self, failed) -> None:
        """After a failure of the primitive ``failed``, build a fresh one (and Runtime batch) for the
        next attempt."""

    def _job_seconds(self, job, result) -> float | None:
        return _simulator_seconds(result[0].metadata)

    def _result(self, job):
        if self.job_timeout is not None:
            try:
                accepts = "timeout" in inspect.signature(job.result).parameters
            except (TypeError, ValueError):
                accepts = False
            if accepts:
                return job.result(timeout=self.job_timeout)
        return job.result()

    def _primitive_for(self, circuit: QuantumCircuit):
        """The primitive that evaluates ``circuit`` (:meth:`primitive`; Aer narrows its noise model)."""
        return self.primitive()

    def _with_retries(self, call: Callable[[Any], Any], circuit: QuantumCircuit | None = None) -> tuple[Any, int]:
        """``call(primitive)`` until it succeeds or ``max_retries`` retries have failed."""
        attempts = 0
        while True:
            attempts += 1
            primitive = None
            try:
                # creating it (a Runtime Batch) may fail too
                primitive = self.primitive() if circuit is None else self._primitive_for(circuit)
                return call(primitive), attempts
            except Exception as exc:  # noqa: BLE001 - any submission/result failure is retried
                if attempts > self.max_retries:
                    raise TargetError(f"{self.name}: evaluation failed after {attempts} attempt(s): "
                                      f"{type(exc).__name__}: {exc}", attempts=attempts) from exc
                self._reset_primitive(primitive)
                if self.retry_backoff > 0:
                    time.sleep(self.retry_backoff * 2 ** (attempts - 1))

    def expectation_values(self, arch: Architecture, inputs: np.ndarray, weights: np.ndarray) -> Evaluation:
        arch = _check_arch(arch)
        started = time.perf_counter()
        circuit, observables, values = self.pub(arch, inputs, weights)
        if len(values) == 0:
            return Evaluation(np.zeros((0, arch.n_qubits)), time.perf_counter() - started, None)

        def call(primitive):
            job = primitive.run([(circuit, observables, values)])
            result = self._result(job)
            evs = np.asarray(result[0].data.evs, dtype=np.float64).reshape(arch.n_qubits, len(values))
            return evs.T.copy(), job, result

        (evs, job, result), attempts = self._with_retries(call, circuit)
        try:
            job_seconds = self._job_seconds(job, result)
        except Exception:  # noqa: BLE001 - timing metadata is best effort
            job_seconds = None
        return Evaluation(values=evs, wall_seconds=time.perf_counter() - started, job_seconds=job_seconds,
                          attempts=attempts)


def _simulator_seconds(metadata) -> float | None:
    """Aer's execution time from PUB metadata (Aer: ``simulator_metadata``; Runtime local:
    ``executor.simulator_metadata``)."""
    if not isinstance(metadata, dict):
        return None
    for meta in (metadata.get("simulator_metadata"), (metadata.get("executor") or {}).get("simulator_metadata")):
        if isinstance(meta, dict) and "time_taken_execute" in meta:
            return float(meta["time_taken_execute"]) + float(meta.get("time_taken_parameter_binding", 0.0))
    return None


class AerTarget(PrimitiveTarget):
    """``qiskit_aer.primitives.EstimatorV2`` on an ``AerSimulator``, with the simulator's noise model.

    Aer's estimator computes the exact expectation values of the noisy circuit (density-matrix or
    noisy-statevector simulation of the gate errors) but, measuring nothing, ignores the noise
    model's **readout errors**; with ``readout_error=True`` (default) they are applied exactly: a
    qubit read with ``P(1|0) = e0``, ``P(0|1) = e1`` reports ``<Z> = (e1 - e0) + (1 - e0 - e1) <Z>_ideal``
    (at the physical qubit the logical qubit ends on). ``shots=S`` then samples every ``<Z_i>`` as
    ``2 k / S - 1`` with ``k ~ Binomial(S, (1 + <Z_i>) / 2)`` (the exact marginal of S measurements),
    from a generator seeded by ``seed`` (see :func:`simulator_seed`); ``shots=None`` returns the
    expectation values themselves. With ``estimator=`` given, its values are returned as they are.

    The proxy's ISA circuits and durations come from the simulator when it carries a device's
    coupling map (``AerSimulator.from_backend``), else from ``reference_backend`` (default
    :func:`default_reference_backend`).
    """

    _TRANSIENT = (*PrimitiveTarget._TRANSIENT, "_readout", "_narrowed")

    def __init__(self, simulator=None, *, shots: int | None = None, seed: int | None = None,
                 optimization_level: int = 1, reference_backend=None, estimator=None, readout_error: bool = True,
                 max_retries: int = 3, retry_backoff: float = 1.0, job_timeout: float | None = None,
                 per_circuit_overhead: float = 0.0, rep_delay: float | None = None,
                 job_overhead: float = DEFAULT_JOB_OVERHEAD):
        from qiskit_aer import AerSimulator

        simulator = AerSimulator() if simulator is None else simulator
        self.readout_error = bool(readout_error)
        if reference_backend is None:
            reference_backend = (simulator if getattr(simulator, "coupling_map", None) is not None
                                 else default_reference_backend())
        name = backend_name(simulator)
        if name == "aer_simulator" and getattr(simulator.options, "noise_model", None) is not None:
            name = "aer_simulator+noise"
        super().__init__(reference_backend, run_backend=simulator, estimator=estimator, name=f"aer:{name}",
                         num_qubits=backend_qubits(simulator), shots=shots, seed=seed,
                         optimization_level=optimization_level, max_retries=max_retries,
                         retry_backoff=retry_backoff, job_timeout=job_timeout,
                         per_circuit_overhead=per_circuit_overhead, rep_delay=rep_delay, job_overhead=job_overhead)

    def _init_caches(self) -> None:
        super()._init_caches()
        self._readout: dict[int, tuple[float, float]] | None = None
        self._narrowed: dict[frozenset[int], Any] = {}

    @property
    def simulator(self):
        return self.run_backend

    def memory_bytes(self, n_qubits: int, batch: int) -> int:
        """Aer simulates one binding at a time: its statevector, or its density matrix (``4**n``
        entries) when the simulator's method picks one (see :func:`aer_state_bytes`)."""
        if self.estimator is not None:
            return 0
        return _simulator_state_bytes(self.simulator, n_qubits, AER_DEFAULT_SHOTS)

    def readout_errors(self) -> dict[int, tuple[float, float]]:
        """``{physical qubit: (P(1|0), P(0|1))}`` of the simulator's noise model (empty without one)."""
        if self._readout is None:
            readout: dict[int, tuple[float, float]] = {}
            noise_model = getattr(self.simulator.options, "noise_model", None)
            if noise_model is not None:
                for error in noise_model.to_dict().get("errors", []):
                    if error.get("type") != "roerror":
                        continue
                    (p0, p1) = np.asarray(error["probabilities"], dtype=np.float64)[:2]
                    for qubits in error.get("gate_qubits") or [(-1,)]:  # -1: every qubit
                        if len(qubits) == 1:
                            readout[int(qubits[0])] = (float(p0[1]), float(p1[0]))
            self._readout = readout
        return self._readout

    def _make_estimator(self, simulator=None):
        from qiskit_aer.primitives import EstimatorV2 as AerEstimator

        run_options = {}
        if self.seed is not None:
            run_options["seed_simulator"] = simulator_seed(self.seed)
        return AerEstimator.from_backend(self.simulator if simulator is None else simulator,
                                         options={"default_precision": 0.0, "run_options": run_options})

    def _primitive_for(self, circuit: QuantumCircuit):
        """The primitive for ``circuit``: one whose noise model keeps only the errors on the qubits the
        circuit uses (:func:`narrow_noise_model`), cached per set of qubits. Aer converts the whole
        noise model on every run, 3.5 s for a 156-qubit device's, whatever the circuit's width; the
        errors on other qubits never act on the circuit, so the values are the same."""
        noise_model = getattr(self.simulator.options, "noise_model", None)
        if self.estimator is not None or noise_model is None:
            return self.primitive()
        qubits = frozenset(circuit.find_bit(q).index for instruction in circuit.data for q in instruction.qubits)
        with self._lock:
            primitive = self._narrowed.get(qubits)
            if primitive is None:
                narrowed = narrow_noise_model(noise_model, qubits)
                if narrowed is None:
                    primitive = self.primitive()
                else:
                    from qiskit_aer import AerSimulator

                    options = self.simulator.options
                    primitive = self._make_estimator(AerSimulator(noise_model=narrowed, method=options.method,
                                                                  precision=options.precision))
                self._narrowed[qubits] = primitive
            return primitive

    def expectation_values(self, arch: Architecture, inputs: np.ndarray, weights: np.ndarray) -> Evaluation:
        evaluation = super().expectation_values(arch, inputs, weights)
        if self.estimator is not None or len(evaluation.values) == 0:
            return evaluation
        started = time.perf_counter()
        values = evaluation.values
        readout = self.readout_errors() if self.readout_error else {}
        if readout:
            layout = self.run_isa(arch)[0].layout
            physical = (layout.final_index_layout()[: arch.n_qubits] if layout is not None
                        else range(arch.n_qubits))
            e0, e1 = np.array([readout.get(q, readout.get(-1, (0.0, 0.0))) for q in physical]).T
            values = (e1 - e0) + (1.0 - e0 - e1) * values
        if self.shots:
            rng = np.random.default_rng(simulator_seed(self.seed))
            p0 = np.clip((1.0 + values) / 2.0, 0.0, 1.0)
            values = 2.0 * rng.binomial(int(self.shots), p0) / self.shots - 1.0
        evaluation.values = np.asarray(values, dtype=np.float64)
        evaluation.wall_seconds += time.perf_counter() - started
        return evaluation


def narrow_noise_model(noise_model, qubits: frozenset[int]):
    """A ``NoiseModel`` with the errors of ``noise_model`` that act only on ``qubits`` (its all-qubit
    errors and custom noise passes kept): for a circuit on those qubits, the same noise. None when
    the model's layout is not the one this reads (it reads Aer's error tables, which have no public
    accessor), or when narrowing leaves nothing out."""
    from qiskit_aer.noise import NoiseModel

    try:
        local, readout = noise_model._local_quantum_errors, noise_model._local_readout_errors
        default, default_readout = noise_model._default_quantum_errors, noise_model._default_readout_error
        passes = list(noise_model._custom_noise_passes)
    except AttributeError:
        return None
    inside = [(name, q, error) for name, by_qubits in local.items() for q, error in by_qubits.items()
              if set(q) <= qubits]
    readout_inside = [(q, error) for q, error in readout.items() if set(q) <= qubits]
    if len(inside) == sum(len(v) for v in local.values()) and len(readout_inside) == len(readout):
        return None
    narrowed = NoiseModel(basis_gates=noise_model.basis_gates)
    for name, error in default.items():
        narrowed.add_all_qubit_quantum_error(error, name, warnings=False)
    if default_readout is not None:
        narrowed.add_all_qubit_readout_error(default_readout, warnings=False)
    for name, q, error in inside:
        narrowed.add_quantum_error(error, name, q, warnings=False)
    for q, error in readout_inside:
        narrowed.add_readout_error(error, q, warnings=False)
    narrowed._custom_noise_passes = passes
    return narrowed


def aer_state_bytes(n_qubits: int, shots: int, *, method: str = "automatic", noisy: bool = False,
                    precision: str = "double") -> int:
    """Bytes of the state an ``AerSimulator`` keeps for an ``n_qubits`` circuit run with ``shots``:
    ``2**n`` (statevector) or ``4**n`` (density matrix) amplitudes of 16 bytes (8 in single
    precision); 0 for methods whose size does not follow the width (stabilizer, MPS...)."""
    if method == "automatic":
        method = "density_matrix" if noisy and shots > 2**int(n_qubits) else "statevector"
    entries = {"statevector": 2**int(n_qubits), "density_matrix": 4**int(n_qubits)}.get(method, 0)
    return entries * (8 if precision == "single" else 16)


def _simulator_state_bytes(simulator, n_qubits: int, shots: int) -> int:
    options = simulator.options
    return aer_state_bytes(n_qubits, shots, method=getattr(options, "method", "automatic"),
                           noisy=getattr(options, "noise_model", None) is not None,
                           precision=getattr(options, "precision", "double"))


class RuntimeTarget(PrimitiveTarget):
    """Qiskit Runtime: the client-side ``qiskit_ibm_runtime.executor_estimator.Estimator`` (the
    replacement of the ``EstimatorV2`` deprecated in qiskit-ibm-runtime 0.50) inside one ``Batch``
    (``Session`` when ``session=True``) opened on first use and kept for the target's lifetime
    (:meth:`close` ends it). On a fake backend or an ``AerSimulator`` this is Runtime's local
    testing mode (noisy Aer sampling with ``shots``, seeded by ``seed``).

    ``shots=None`` uses :data:`DEFAULT_RUNTIME_SHOTS`. ``resilience_level`` is set explicitly
    (default 0: the service's default 1 adds measurement twirling and calibration circuits).
    ``runtime_options`` (see :func:`check_runtime_options`) set Runtime's error suppression and
    mitigation on the executor-based Estimator, which accepts them all: ``resilience_level``,
    twirling, dynamical decoupling, measurement mitigation (TREX) and ZNE; the runtime proxy
    counts what they add (:meth:`mitigation_plan`).
    ``estimator=`` takes a ready primitive (e.g. a legacy ``qiskit_ibm_runtime.EstimatorV2``)
    which is used as configured. ``max_concurrent_jobs``: how many candidates' jobs a search keeps
    in flight at once in the one ``Batch`` (submitted from a thread pool; default 1, one at a time).
    A failed job replaces the primitive and its ``Batch`` once, however many jobs of the old one
    were in flight: jobs still running there finish (closing a ``Batch`` only stops new
    submissions), and their threads retry on the new one.
    """

    shots: int  # never None: DEFAULT_RUNTIME_SHOTS when none are given
    on_device = True

    _TRANSIENT = (*PrimitiveTarget._TRANSIENT, "_mode")

    def __init__(self, backend, *, shots: int | None = None, seed: int | None = None, optimization_level: int = 1,
                 reference_backend=None, estimator=None, resilience_level: int = 0, session: bool = False,
                 max_retries: int = 3, retry_backoff: float = 1.0, job_timeout: float | None = None,
                 per_circuit_overhead: float = 0.0, max_concurrent_jobs: int = 1, runtime_options=None,
                 rep_delay: float | None = None, job_overhead: float = DEFAULT_JOB_OVERHEAD):
        self.max_concurrent_jobs = check_int("max_concurrent_jobs", max_concurrent_jobs, 1)
        self.local = is_fake_backend(backend) or is_aer_simulator(backend)
        self.runtime_options = check_runtime_options(runtime_options)
        level = self.runtime_options.get("resilience_level", resilience_level)
        if level != resilience_level and resilience_level != 0:
            raise InvalidArgument("resilience_level", resilience_level, "one of them (or equal values)",
                                  context=f" with runtime_options resilience_level={level!r}")
        self.resilience_level = int(level)
        self.session = bool(session)
        prefix = "runtime-local" if self.local else "ibm"
        super().__init__(backend if reference_backend is None else reference_backend, run_backend=backend,
                         estimator=estimator, name=f"{prefix}:{backend_name(backend)}",
                         num_qubits=backend_qubits(backend), shots=shots or DEFAULT_RUNTIME_SHOTS, seed=seed,
                         optimization_level=optimization_level, max_retries=max_retries,
                         retry_backoff=retry_backoff, job_timeout=job_timeout,
                         per_circuit_overhead=per_circuit_overhead, rep_delay=rep_delay, job_overhead=job_overhead)

    def _init_caches(self) -> None:
        super()._init_caches()
        self._mode = None

    def memory_bytes(self, n_qubits: int, batch: int) -> int:
        """Local testing mode samples on ``AerSimulator.from_backend`` (with the device's noise
        model) in this process; an IBM backend runs remotely (0)."""
        if not self.local or self.estimator is not None:
            return 0
        if is_aer_simulator(self.run_backend):
            return _simulator_state_bytes(self.run_backend, n_qubits, int(self.shots))
        return aer_state_bytes(n_qubits, int(self.shots), noisy=True)  # a fake backend carries its noise model

    def _make_estimator(self):
        from qiskit_ibm_runtime import Batch, Session
        from qiskit_ibm_runtime.executor_estimator import Estimator

        if self._mode is None:
            self._mode = (Session if self.session else Batch)(backend=self.run_backend)
        estimator = Estimator(mode=self._mode, options=self.estimator_options())
        if self.local and self.seed is not None:
            estimator.options.simulator.seed_simulator = simulator_seed(self.seed)
        return estimator

    def emulator(self) -> AerTarget:
        """The device's emulation: Aer with the executing backend's noise model
        (``AerSimulator.from_backend``, which builds it from an IBM backend's reported properties),
        exact noisy expectation values with its readout errors, the same seed and transpiler level.
        Nothing it runs is billed."""
        from qiskit_aer import AerSimulator

        simulator = self.run_backend if is_aer_simulator(self.run_backend) else AerSimulator.from_backend(
            self.run_backend)
        return AerTarget(simulator, seed=self.seed, optimization_level=self.optimization_level,
                         max_retries=self.max_retries, retry_backoff=self.retry_backoff, job_timeout=self.job_timeout)

    def estimator_options(self):
        """The ``EstimatorOptions`` of the target's Estimator: shots, resilience level and the
        ``runtime_options`` (settings left out keep the resilience level's defaults)."""
        return build_estimator_options(self.resilience_level, int(self.shots), self.runtime_options)

    def mitigation_plan(self, shots: int | None = None) -> MitigationPlan:
        """What the options make Runtime run for ``shots`` per circuit (default the target's), by
        ``qiskit_ibm_runtime``'s own rules (``finalize_estimator_options``, ``calculate_twirling_shots``,
        TREX randomizations)."""
        shots = int(self.shots if shots is None else shots)
        return resolve_mitigation_plan(build_estimator_options(self.resilience_level, shots, self.runtime_options),
                                       shots)

    def shot_delay(self) -> float:
        """The ``rep_delay`` Runtime option when set, else as :meth:`ExecutionTarget.shot_delay`."""
        if "rep_delay" in self.runtime_options:
            return float(self.runtime_options["rep_delay"])
        return super().shot_delay()

    def _executions(self, shots: int) -> tuple[int, int]:
        plan = self.mitigation_plan(shots)
        return plan.executions_per_circuit, plan.calibration_executions

    def _reset_primitive(self, failed) -> None:
        with self._lock:
            if self.estimator is not None or self._primitive is not failed:
                return  # a primitive given by the user, or already replaced by another thread
            mode, self._mode, self._primitive = self._mode, None, None
        self._close(mode)

    def close(self) -> None:
        with self._lock:
            mode, self._mode, self._primitive = self._mode, None, None
        self._close(mode)

    @staticmethod
    def _close(mode) -> None:
        if mode is not None:
            try:
                mode.close()
            except Exception:  # noqa: BLE001 - closing an expired batch may fail; nothing to release
                pass

    def _job_seconds(self, job, result) -> float | None:
        seconds = _simulator_seconds(result[0].metadata)
        if seconds is not None or self.local:
            return seconds
        usage = (job.metrics() or {}).get("usage") or {}
        for key in ("quantum_seconds", "seconds"):
            if usage.get(key) is not None:
                return float(usage[key])
        return None


# ------------------------------------------------------------------------------------------------
# resolve_target
# ------------------------------------------------------------------------------------------------
def _check_options(mode, shots, seed, optimization_level, max_retries, retry_backoff, job_timeout,
                   resilience_level, max_concurrent_jobs) -> None:
    check_choice("mode", mode, MODES)
    check_int("shots", shots, 1, allow_none=True, allowed="None (exact) or an integer >= 1")
    check_int("seed", seed, 0, allow_none=True, allowed="None or an integer >= 0")
    check_int("optimization_level", optimization_level, 0, 3, allowed="0, 1, 2, 3")
    check_int("max_retries", max_retries, 0)
    # no upper bound: an infinite backoff or timeout waits forever, NaN is refused
    check_number("retry_backoff", retry_backoff, 0, high_inclusive=True, allowed="a number of seconds >= 0")
    check_number("job_timeout", job_timeout, 0, low_inclusive=False, high_inclusive=True, allow_none=True,
                 allowed="None or a number of seconds > 0")
    check_int("resilience_level", resilience_level, 0, 2, allowed="0, 1, 2")
    check_int("max_concurrent_jobs", max_concurrent_jobs, 1)


def resolve_target(backend: BackendV2 | ExecutionTarget | None = None, *, mode: str = "auto", shots: int | None = None,
                   seed: int | None = None, optimization_level: int = 1, reference_backend: BackendV2 | None = None,
                   max_retries: int = 3, retry_backoff: float = 1.0, job_timeout: float | None = None,
                   resilience_level: int = 0, session: bool = False, estimator: BaseEstimatorV2 | None = None,
                   max_concurrent_jobs: int = 1,
                   runtime_options: dict | None = None) -> ExecutionTarget:
    """The :class:`ExecutionTarget` of ``backend``.

    Args:
        backend: ``None`` (exact statevector), a ``qiskit_aer.AerSimulator``, a fake IBM backend or
            an ``IBMBackend`` (any other ``BackendV2`` runs on ``AerSimulator.from_backend``).
        mode: ``"auto"``; ``"exact"`` (only with ``backend=None``); ``"aer"`` (Aer, with the noise model
            of a device backend); ``"runtime"`` (Runtime primitives: local testing mode for fake
            backends and Aer). ``auto``: exact for None, Aer for an ``AerSimulator`` or a generic
            ``BackendV2``, Runtime for fake and IBM backends.
        shots: shots per circuit (None: expectation values on exact/Aer targets, 4096 on Runtime).
        seed: seed of the shot noise (0 is valid; see :func:`simulator_seed`).
        optimization_level: preset pass-manager level of the ISA circuits.
        reference_backend: backend of the runtime proxy's ISA circuits and durations (default: the
            executing backend, or ``FakeTorino`` for exact and ideal-Aer targets).
        max_retries, retry_backoff, job_timeout: fault handling of primitive jobs.
        resilience_level: Runtime error-mitigation level, set explicitly (default 0).
        session: Runtime: run in a ``Session`` instead of a ``Batch``.
        estimator: a ready ``BaseEstimatorV2`` to call instead of the target's own (e.g. a legacy
            ``qiskit_ibm_runtime.EstimatorV2``, or a subclass for fault injection). With
            ``backend=None`` it receives the logical circuits.
        runtime_options: Runtime error suppression and mitigation (see :func:`check_runtime_options`):
            ``resilience_level``, ``twirling``, ``dynamical_decoupling``, ``measure_mitigation``,
            ``zne_mitigation``. Only for Runtime targets.
        max_concurrent_jobs: Runtime: jobs a search keeps in flight at once in the target's one
            ``Batch`` (default 1). Other targets evaluate in this process, one candidate at a time
            (use ``executor=``/``n_jobs=`` of :class:`~qiskit_qnas.QNASEstimator` for parallelism).
    """
    _check_options(mode, shots, seed, optimization_level, max_retries, retry_backoff, job_timeout, resilience_level,
                   max_concurrent_jobs)
    runtime_options = check_runtime_options(runtime_options)
    if estimator is not None and not callable(getattr(estimator, "run", None)):
        raise InvalidArgument("estimator", estimator, "None or a Qiskit EstimatorV2 primitive")
    if backend is not None and not hasattr(backend, "target"):
        raise InvalidArgument("backend", backend, "None, a qiskit_aer.AerSimulator, a fake IBM "
                              "backend (qiskit_ibm_runtime.fake_provider) or an IBMBackend")
    runtime = backend is not None and (mode == "runtime" or (
        mode == "auto" and (is_fake_backend(backend) or is_ibm_backend(backend))))
    if runtime_options and not runtime:
        raise InvalidArgument("runtime_options", runtime_options, "None (error suppression and mitigation are "
                              "Runtime settings: use a fake IBM backend with mode 'runtime' or an IBMBackend)",
                              context=" for a non-Runtime target")
    if runtime_options and estimator is not None:
        raise ValueError("invalid runtime_options with estimator=; allowed: one of them (configure the options "
                         "on the estimator you pass)")
    if max_concurrent_jobs > 1 and not runtime:
        raise InvalidArgument("max_concurrent_jobs", max_concurrent_jobs, "1 (jobs in flight are a Runtime setting: "
                              "use executor= or n_jobs= to evaluate candidates in parallel elsewhere)",
                              context=" for a non-Runtime target")
    faults: dict[str, Any] = dict(max_retries=int(max_retries), retry_backoff=float(retry_backoff),
                                  job_timeout=job_timeout)
    common = dict(shots=None if shots is None else int(shots), seed=None if seed is None else int(seed),
                  optimization_level=int(optimization_level), reference_backend=reference_backend,
                  estimator=estimator, **faults)
    if backend is None:
        if mode == "runtime":
            raise InvalidArgument("mode", mode, "a backend (fake IBM backend, IBMBackend or AerSimulator) for "
                                  "Runtime, or mode 'auto'/'exact'/'aer'", context=" with backend=None")
        if mode == "aer":
            return AerTarget(None, **common)
        if estimator is not None:
            return PrimitiveTarget(reference_backend if reference_backend is not None else default_reference_backend(),
                                   run_backend=None, estimator=estimator,
                                   name=f"estimator:{type(estimator).__name__}", num_qubits=None,
                                   shots=common["shots"], seed=common["seed"],
                                   optimization_level=int(optimization_level), **faults)
        if shots is not None:
            raise InvalidArgument("shots", shots, "None, or pass backend=AerSimulator() / mode='aer' for shot noise",
                                  context=" with backend=None (exact simulation)")
        return ExactTarget(reference_backend, optimization_level=int(optimization_level))
    if mode == "exact":
        raise InvalidArgument("mode", mode, "'auto', 'aer', 'runtime' (or backend=None for exact simulation)",
                              context=f" with backend={backend_name(backend)}")
    is_aer, is_fake, is_ibm = is_aer_simulator(backend), is_fake_backend(backend), is_ibm_backend(backend)
    if mode == "auto":
        mode = "runtime" if (is_fake or is_ibm) else "aer"
    if mode == "aer":
        if is_aer:
            return AerTarget(backend, **common)
        from qiskit_aer import AerSimulator

        return AerTarget(AerSimulator.from_backend(backend), **common)
    if not (is_aer or is_fake or is_ibm):
        raise InvalidArgument("mode", mode, "an IBMBackend, a fake IBM backend or an AerSimulator (Runtime local "
                              "testing mode), or mode='aer'", context=f" with backend={backend_name(backend)}")
    return RuntimeTarget(backend, resilience_level=int(resilience_level), session=session,
                         max_concurrent_jobs=int(max_concurrent_jobs), runtime_options=runtime_options, **common)


__all__ = ["DEFAULT_PROXY_SHOTS", "AerTarget", "Evaluation", "ExactTarget", "ExecutionTarget", "MitigationPlan",
           "PrimitiveTarget", "check_runtime_options",
           "RuntimeEstimate", "RuntimeTarget", "TargetError", "aer_state_bytes", "default_reference_backend",
           "parameter_values", "resolve_target", "simulator_seed",
           # the settings of the runtime proxy and of Runtime options, importable from here as before
           "DD_KEYS", "DD_SEQUENCES", "DEFAULT_RUNTIME_SHOTS", "FALLBACK_DURATIONS", "MODES", "RUNTIME_OPTION_KEYS",
           "TWIRLING_KEYS"]
