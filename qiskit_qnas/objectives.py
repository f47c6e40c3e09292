"""One candidate evaluated: inherited from the SuperCircuit, fine-tuned, measured on the target, its objectives read.

What each objective is, where its value is read and how it is drawn is an
:class:`~qiskit_qnas.objective.Objective` (:mod:`qiskit_qnas.objective`); this module measures a
candidate and reads the context's objectives from the measurements.

:func:`evaluate_candidate` is a pure function of the candidate and an :class:`EvaluationContext`
(shared weights, data, target, settings), so a generation's candidates can be evaluated in any
order, in other processes or on a Dask cluster, with identical results.

* ``val_error`` = 1 - accuracy on the validation split. The candidate inherits its slice of the
  SuperCircuit, is fine-tuned for ``finetune_epochs`` (on at most ``finetune_samples`` training
  samples) on the exact engine (under the target's
  injected errors when the SuperCircuit carries a :class:`~qiskit_qnas.noise.TrainingNoise`), then its
  quantum layer is evaluated **on the target** (exact, Aer with noise, or IBM Runtime;
  :func:`evaluate_on_target`): the classical pre-layer gives the circuit inputs of every validation
  sample, the target returns ``<Z_i>`` for all of them in one broadcast PUB, and the head turns them
  into class scores. The chosen model predicts on the target the same way (:func:`target_logits`,
  ``predict(X, on_target=True)``), one PUB per chunk of samples.
* ``runtime_proxy`` = the device seconds IBM would bill for the evaluation: shots x circuits (one
  per validation sample) x (repetition delay + the critical path of the candidate's ISA circuit on
  the target's (reference) backend), plus the per-job overhead, times what mitigation multiplies;
  see :mod:`qiskit_qnas.runtime_proxy` and
  :meth:`qiskit_qnas.targets.ExecutionTarget.runtime_estimate`. Deterministic. In a multi-fidelity
  search the candidate is measured on the device's emulation and this is the device's estimate
  (``EvaluationContext.cost_target``). The measured wall
  clock of the validation evaluation is kept beside it (``measured_seconds``) and can be the
  objective instead (``runtime_objective="measured"``).
* ``n_subcircuits`` = the fewest devices of ``qubit_budget`` qubits that run the pieces circuit
  cutting splits the candidate into, pieces that fit together sharing a device
  (:func:`qiskit_qnas.cutting.cutting_cost`, ``CuttingCost.n_subcircuits``; the piece count is
  ``n_pieces`` beside it); 1 when the candidate fits. ``cutting_objective``
  ``"subexperiments"`` or ``"overhead"`` uses log10 of the sub-experiment count or of the sampling
  overhead instead.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .cutting import cutting_cost
from .objective import Measurements, Objective, search_objectives
from .qpu_budget import billed_seconds
from .result import Candidate
from .space import Architecture
from .supercircuit import SuperCircuit, finetune

#: default cap on the samples a candidate is fine-tuned on: on MNIST 6k, fine-tuning 72 candidates
#: on all 4,800 training samples took 81 % of a 30-minute search; the SuperCircuit and the chosen
#: model still train on everything.
FINETUNE_SAMPLES = 2048
#: samples per target call (one broadcast PUB, one job) when a trained model predicts on its target
TARGET_CHUNK_SAMPLES = 1000


@dataclass
class EvaluationContext:
    """Everything :func:`evaluate_candidate` needs besides the architecture (picklable)."""

    supercircuit: SuperCircuit
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    target: Any  # qiskit_qnas.targets.ExecutionTarget
    qubit_budget: int
    finetune_epochs: int = 5
    #: fine-tuning sees at most this many training samples (one subset, the same for every candidate)
    finetune_samples: int | None = FINETUNE_SAMPLES
    batch_size: int = 32
    learning_rate: float = 0.02
    seed: int = 0
    cut_time_limit: float = 5.0
    runtime_objective: str = "proxy"
    cutting_objective: str = "subcircuits"
    #: the target whose device time the runtime objective counts, when candidates are measured on
    #: another (a multi-fidelity search measures on the emulation of this device); None: ``target``
    cost_target: Any = None

    @property
    def billed_target(self) -> Any:
        """The target the runtime objective is the device time of."""
        return self.target if self.cost_target is None else self.cost_target

    @property
    def objectives(self) -> tuple[Objective, ...]:
        """The objectives of ``runtime_objective`` and ``cutting_objective``, in order
        (:func:`~qiskit_qnas.objective.search_objectives`)."""
        return search_objectives(self.runtime_objective, self.cutting_objective)


def candidate_seed(seed: int, arch: Architecture) -> int:
    """A seed that depends only on the search seed and the architecture (not on evaluation order)."""
    return (int(seed) * 1_000_003 + zlib.crc32(arch.key.encode())) % (2**31 - 1)


def finetune_subset(context: EvaluationContext) -> tuple[np.ndarray, np.ndarray]:
    """The training samples candidates are fine-tuned on: all of them, or a subset of
    ``finetune_samples`` drawn once from the search seed (every candidate sees the same one)."""
    n, cap = len(context.X_train), context.finetune_samples
    if cap is None or n <= cap:
        return context.X_train, context.y_train
    index = np.sort(np.random.default_rng(context.seed).permutation(n)[:cap])
    return context.X_train[index], context.y_train[index]


def finetune_candidate(arch: Architecture, context: EvaluationContext, X, y, epochs: int):
    """``arch`` inherited from the context's SuperCircuit and fine-tuned on (X, y) for ``epochs`` with
    the context's batch size, its learning rate (or the architecture's own) and the candidate's seed."""
    return finetune(context.supercircuit, arch, X, y, epochs, batch_size=context.batch_size,
                    lr=arch.learning_rate or context.learning_rate, seed=candidate_seed(context.seed, arch))


def objectives_of(measured: Measurements, objectives: Sequence[Objective]) -> tuple[float, ...]:
    """The tuple the search minimises: each objective read from the candidate's measurements."""
    return tuple(objective.value_of(measured) for objective in objectives)


def failed_objectives(objectives: Sequence[Objective]) -> tuple[float, ...]:
    """The tuple of a candidate whose evaluation failed: never better than a real one."""
    return tuple(objective.failed_value for objective in objectives)


def evaluate_on_target(model, target, X) -> tuple[torch.Tensor, Any]:
    """The logits of ``model`` (an :class:`~qiskit_qnas.model.HQNN`) with its quantum layer
    evaluated on ``target``: the pre-layer gives the circuit inputs of every row of ``X`` (scaled
    features), the target returns their ``<Z_i>`` in one broadcast PUB (one job, retried by the
    target), and the model's read-out normalisation and head turn them into logits. Returns the logits and the target's
    :class:`~qiskit_qnas.targets.Evaluation`."""
    model.eval()
    weights = model.quantum.weight.detach().to(torch.float64).numpy()
    with torch.no_grad():
        inputs = model.circuit_inputs(torch.as_tensor(np.asarray(X, dtype=np.float32)))
    evaluation = target.expectation_values(model.arch, inputs.to(torch.float64).numpy(), weights)
    with torch.no_grad():
        logits = model.scores(torch.as_tensor(evaluation.values, dtype=torch.float32))
    return logits, evaluation


def target_logits(model, target, X, chunk_samples: int = TARGET_CHUNK_SAMPLES) -> np.ndarray:
    """:func:`evaluate_on_target` over ``X`` in chunks of ``chunk_samples`` rows (one job each), with
    the target's shots, seed and retries."""
    X = np.asarray(X, dtype=np.float32)
    chunks = [evaluate_on_target(model, target, X[start:start + chunk_samples])[0].numpy()
              for start in range(0, len(X), chunk_samples)]
    return np.concatenate(chunks) if chunks else np.zeros((0, model.n_classes), dtype=np.float32)


def measurement_record(context_target, evaluated_on, val_error: float, n_samples: int, qpu_seconds: float) -> dict:
    """One entry of :attr:`~qiskit_qnas.result.Candidate.measurements`: where a validation error was
    measured (a device, the emulation of ``context_target``, or a simulator), on what and at what cost."""
    if evaluated_on.on_device:
        kind = "device"
    elif context_target is not evaluated_on and context_target.on_device:
        kind = "emulator"
    else:
        kind = "simulator"
    return {"source": evaluated_on.name, "kind": kind, "val_error": float(val_error), "n_samples": int(n_samples),
            "shots": None if evaluated_on.shots is None else int(evaluated_on.shots),
            "qpu_seconds": float(qpu_seconds)}


def accuracy_and_loss(logits: torch.Tensor, y) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``logits`` on the labels ``y``."""
    y = np.asarray(y)
    accuracy = float((logits.argmax(1).numpy() == y).mean())
    return accuracy, float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(y, dtype=torch.long)))


def evaluate_candidate(arch: Architecture, context: EvaluationContext, generation: int = 0) -> Candidate:
    """Inherit, fine-tune and measure one candidate; a failure on the target is recorded, not raised."""
    cost = cutting_cost(arch, qubit_budget=context.qubit_budget, time_limit=context.cut_time_limit)
    # the device's estimate; billed only when the candidate is measured on the device itself
    runtime = context.billed_target.runtime_estimate(arch, n_circuits=len(context.X_val))
    started = time.perf_counter()
    model = finetune_candidate(arch, context, *finetune_subset(context), context.finetune_epochs)
    finetune_seconds = time.perf_counter() - started
    weights = model.quantum.weight.detach().to(torch.float64).numpy().copy()
    common = dict(architecture=arch, runtime=runtime, cutting=cost, weights=weights.tolist(),
                  finetune_seconds=finetune_seconds, generation=generation)
    try:
        logits, evaluation = evaluate_on_target(model, context.target, context.X_val)
    except Exception as exc:  # noqa: BLE001 - any target failure is recorded with the candidate
        attempts = getattr(exc, "attempts", 1)
        return Candidate(val_error=1.0, runtime_proxy=runtime.seconds, n_subcircuits=cost.n_subcircuits,
                         objectives=failed_objectives(context.objectives), failed=True,
                         error=f"{type(exc).__name__}: {exc}", attempts=attempts,
                         qpu_seconds=billed_seconds(context.target, runtime.seconds, attempts), **common)
    accuracy, val_loss = accuracy_and_loss(logits, context.y_val)
    val_error = 1.0 - accuracy
    qpu_seconds = billed_seconds(context.target, runtime.seconds, evaluation.attempts, evaluation.job_seconds)
    record = measurement_record(context.billed_target, context.target, val_error, len(context.X_val), qpu_seconds)
    measured = Measurements(val_error=val_error, runtime=runtime, measured_seconds=evaluation.wall_seconds,
                            cutting=cost)
    objectives = objectives_of(measured, context.objectives)
    return Candidate(val_error=val_error, runtime_proxy=runtime.seconds, n_subcircuits=cost.n_subcircuits,
                     objectives=objectives, val_accuracy=accuracy, val_loss=val_loss,
                     measured_seconds=evaluation.wall_seconds, job_seconds=evaluation.job_seconds,
                     attempts=evaluation.attempts, qpu_seconds=qpu_seconds, measurements=[record], **common)


def reevaluate_candidate(candidate: Candidate, context: EvaluationContext, epochs: int) -> Candidate:
    """A second measurement of ``candidate``'s validation error, pooled with the first.

    The candidate inherits its weights again and is fine-tuned with the recipe the chosen model
    gets (``epochs`` on the whole training split rather than ``finetune_epochs`` on the fine-tuning
    subset), then scored on the validation split on the target. Returns a copy whose
    ``val_error``, ``val_accuracy``, ``val_loss`` and error objective are the means of both
    evaluations (``val_errors`` keeps each); runtime and cutting measurements are kept. A failure
    on the target raises (the search-time candidate stays valid).
    """
    if candidate.failed or candidate.val_errors:
        raise ValueError(f"{candidate.architecture.key}: only a successful, not yet re-evaluated candidate can be "
                         "re-evaluated")
    arch = candidate.architecture
    started = time.perf_counter()
    model = finetune_candidate(arch, context, context.X_train, context.y_train, epochs)
    finetune_seconds = time.perf_counter() - started
    logits, evaluation = evaluate_on_target(model, context.target, context.X_val)
    accuracy, val_loss = accuracy_and_loss(logits, context.y_val)
    estimate = context.target.runtime_estimate(arch, n_circuits=len(context.X_val))
    qpu_seconds = billed_seconds(context.target, estimate.seconds, evaluation.attempts, evaluation.job_seconds)
    record = measurement_record(context.billed_target, context.target, 1.0 - accuracy, len(context.X_val), qpu_seconds)
    val_errors = [candidate.val_error, 1.0 - accuracy]
    val_error = float(np.mean(val_errors))
    return dataclasses.replace(candidate, val_error=val_error, val_accuracy=1.0 - val_error,
                               val_loss=(candidate.val_loss + val_loss) / 2, val_errors=val_errors,
                               # the search's objectives lead with val_error (search_objectives)
                               objectives=(val_error, *candidate.objectives[1:]),
                               finetune_seconds=candidate.finetune_seconds + finetune_seconds,
                               qpu_seconds=candidate.qpu_seconds + qpu_seconds,
                               measurements=[*candidate.measurements, record])
