"""Multi-fidelity search on a device: the emulation ranks the candidates, the device decides the close ones.

In a multi-fidelity search (:mod:`qiskit_qnas.qpu_budget`) every candidate is measured on the
device's emulation. :func:`confirm_on_device` then measures the candidates the emulation cannot
tell apart (the leader and its near-ties, :func:`qiskit_qnas.selection.contenders`) on the device,
each on the same stratified validation subset, with shots sized by :func:`shots_for_margins`, and
never past the QPU budget; :func:`choose_confirmed` picks the model among them by their device
error. Every measurement is recorded with its source (:attr:`~qiskit_qnas.result.Candidate.measurements`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from .objectives import (
    EvaluationContext,
    accuracy_and_loss,
    evaluate_on_target,
    finetune_candidate,
    finetune_subset,
    measurement_record,
)
from .qpu_budget import QPUBudgetError, billed_seconds, check_budget
from .result import Candidate
from .selection import selection_key

logger = logging.getLogger(__name__)

#: fewest shots a confirmation runs (below this a ``<Z_i>`` is known to worse than 0.09)
MIN_SHOTS = 128
#: the share of validation samples allowed closer to a decision boundary than the shot noise
#: resolves (see :func:`shots_for_margins`)
MARGIN_QUANTILE = 0.1
#: how many standard deviations of shot noise the margin at that quantile must hold
MARGIN_SIGMAS = 2.0


def decision_margins(weight: np.ndarray, bias: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each row of ``<Z_i>`` values, its Euclidean distance to the nearest decision boundary of
    the linear head ``logits = values @ weight.T + bias`` (how far the read-outs may move before the
    predicted class changes)."""
    values = np.asarray(values, dtype=np.float64)
    logits = values @ weight.T + bias
    top = logits.argmax(1)
    margins = np.full(len(values), np.inf)
    for k in range(weight.shape[0]):
        normal = np.linalg.norm(weight[top] - weight[k], axis=1)
        other = top != k
        gap = logits[np.arange(len(values)), top] - logits[:, k]
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = np.where(other & (normal > 0), gap / np.where(normal > 0, normal, 1.0), np.inf)
        margins = np.minimum(margins, distance)
    return margins


def shots_for_margins(margins: np.ndarray, max_shots: int, quantile: float = MARGIN_QUANTILE,
                      sigmas: float = MARGIN_SIGMAS, min_shots: int = MIN_SHOTS) -> int:
    """Shots at which shot noise changes few of the decisions being measured.

    With ``S`` shots each ``<Z_i>`` carries a standard error of at most ``1 / sqrt(S)``, and so does
    its component across a decision boundary. A sample whose read-outs lie ``m`` from the boundary
    (:func:`decision_margins`) keeps its class unless the noise moves it ``m``; asking the
    ``quantile`` of the margins to hold ``sigmas`` standard errors gives ``S = (sigmas / m_q)**2``,
    clipped to ``[min_shots, max_shots]``."""
    finite = np.asarray(margins, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return int(min_shots)
    margin = float(np.quantile(finite, quantile))
    needed = max_shots if margin <= 0 else math.ceil((sigmas / margin) ** 2)
    return int(min(max(needed, min_shots), max_shots))


def device_subset(X: np.ndarray, y: np.ndarray, n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified subset of ``n_samples`` of the validation split (all of it when it is no larger),
    the same for every candidate of a search."""
    if n_samples >= len(X):
        return X, y
    try:
        X_sub, _, y_sub, _ = train_test_split(X, y, train_size=n_samples, stratify=y, random_state=seed)
    except ValueError:  # a class too rare to stratify: a plain draw
        X_sub, _, y_sub, _ = train_test_split(X, y, train_size=n_samples, random_state=seed)
    return X_sub, y_sub


def confirm_on_device(candidates: Sequence[Candidate], indices: Sequence[int], context: EvaluationContext, device,
                      n_samples: int, max_qpu_seconds: float | None = None) -> list[Candidate]:
    """``candidates`` with those at ``indices`` measured on ``device``, in that order.

    Each is fine-tuned as the search fine-tuned it (the same weights), its read-outs on the subset
    taken on the emulation (``context.target``) to size the shots (:func:`shots_for_margins`, at
    most ``device.shots``), then measured on ``device`` on the :func:`device_subset` of
    ``n_samples``. A measurement that would take the accounted usage past ``max_qpu_seconds`` is
    not submitted and ends the confirmations; a failed one is logged and accounted. Returns a new
    list; a measured candidate gains a device measurement record and its ``qpu_seconds``.
    """
    candidates = list(candidates)
    X_sub, y_sub = device_subset(context.X_val, context.y_val, n_samples, context.seed)
    spent = sum(c.qpu_seconds for c in candidates)
    for index in indices:
        candidate = candidates[index]
        arch = candidate.architecture
        model = finetune_candidate(arch, context, *finetune_subset(context), context.finetune_epochs)
        _, emulated = evaluate_on_target(model, context.target, X_sub)
        weight, bias = model.readout_affine()  # the head's affine map, the read-out normalisation folded in
        margins = decision_margins(weight, bias, emulated.values)
        shots = shots_for_margins(margins, int(device.shots))
        estimate = device.runtime_estimate(arch, len(X_sub), shots=shots)
        try:
            check_budget(spent, estimate.seconds, max_qpu_seconds, f"confirming {arch.key} on {device.name}")
        except QPUBudgetError as exc:
            logger.warning("device confirmations stop: %s", exc)
            break
        runner = device.with_shots(shots)
        try:
            logits, evaluation = evaluate_on_target(model, runner, X_sub)
        except Exception as exc:  # noqa: BLE001 - the search's emulated measurement stands
            spent += billed_seconds(runner, estimate.seconds, getattr(exc, "attempts", 1))
            logger.warning("confirming %s on %s failed (%s: %s)", arch.key, device.name, type(exc).__name__, exc)
            continue
        finally:
            runner.close()
        accuracy, _ = accuracy_and_loss(logits, y_sub)
        billed = billed_seconds(runner, estimate.seconds, evaluation.attempts, evaluation.job_seconds)
        spent += billed
        record = measurement_record(device, runner, 1.0 - accuracy, len(X_sub), billed)
        candidates[index] = dataclasses.replace(candidate, qpu_seconds=candidate.qpu_seconds + billed,
                                                measurements=[*candidate.measurements, record])
        logger.info("confirmed %s on %s: emulated error %.4f, device error %.4f (%d samples, %d shots, %.1f QPU s)",
                    arch.key, device.name, candidate.val_error, 1.0 - accuracy, len(X_sub), shots, billed)
    return candidates


def choose_confirmed(candidates: Sequence[Candidate]) -> Candidate | None:
    """The candidate with the lowest device error among those measured on a device (ties: the
    ``min_error`` order of the emulated measurements); None when none was."""
    confirmed = [c for c in candidates if not c.failed and c.device_error is not None]
    if not confirmed:
        return None
    key = selection_key("min_error")
    return min(confirmed, key=lambda c: (c.device_error, key(c)))


__all__ = ["MIN_SHOTS", "choose_confirmed", "confirm_on_device", "decision_margins", "device_subset",
           "shots_for_margins"]
