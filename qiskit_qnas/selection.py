"""Choosing the model a search returns: the front member a selection rule names, the ``min_error``
leader's validation error confirmed by re-evaluation first.

The search's validation errors are single measurements on a small split after a short
fine-tuning, and the lowest of some 70 of them is biased low (the winner's curse): on scikit-learn's
digits (251 validation samples) the search chose ``q6-l1-angle_x-ry-full1`` at 6 validation errors,
whose final model then scored 0.957 on the test split, where the amplitude member 2 errors behind
it scored 0.980 (``benchmarks/search_fidelity.py --seed 2``). :func:`confirm_leader` re-measures the
leader before believing it: a lucky measurement falls back, and the next leader is measured in turn.
Candidates that the first measurement cannot tell from the leader (within one standard error of
its validation error) are measured too, so an exact tie is decided by a second measurement rather
than by the runtime proxy alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

from .result import Candidate

logger = logging.getLogger(__name__)

#: the rules ``QNASEstimator(selection=...)`` names, and the objectives each compares, in order
SELECTIONS = {"min_error": (0, 1, 2), "min_runtime": (1, 0, 2), "min_subcircuits": (2, 0, 1)}


def selection_key(selection: str) -> Callable[[Candidate], tuple]:
    """The order ``selection`` ranks candidates in (the first is chosen): its objectives in turn; on
    equal objectives (common on a small validation split, where many candidates reach 0 errors) the
    lower validation loss, a known one before an unknown one, then the architecture."""
    order = SELECTIONS[selection]
    return lambda c: (tuple(c.objectives[i] for i in order), c.val_loss if math.isfinite(c.val_loss) else math.inf,
                      c.architecture)


def within_limits(candidate: Candidate, max_subcircuits: int | None, max_runtime: float | None) -> bool:
    """Whether ``candidate`` satisfies ``max_subcircuits`` and ``max_runtime`` (None: no limit)."""
    return ((max_subcircuits is None or candidate.n_subcircuits <= max_subcircuits)
            and (max_runtime is None or candidate.runtime_proxy <= max_runtime))


def select(front: Sequence[Candidate], selection: str | Callable[[list[Candidate]], Candidate],
           max_subcircuits: int | None = None, max_runtime: float | None = None) -> Candidate:
    """The member of ``front`` that ``selection`` names: the first in :func:`selection_key`'s order
    among the members within the limits (the whole front if none is), or what a callable returns."""
    if callable(selection):
        chosen = selection(list(front))
        if chosen not in front:
            raise ValueError("the selection callable must return a member of the front it was given")
        return chosen
    allowed = [c for c in front if within_limits(c, max_subcircuits, max_runtime)]
    if not allowed:
        logger.warning("no front member satisfies max_subcircuits/max_runtime; selecting from the whole front")
        allowed = list(front)
    return min(allowed, key=selection_key(selection))


def standard_error(error: float, n_samples: int) -> float:
    """The binomial standard error of a classification error measured on ``n_samples``, with the
    error taken as at least one sample's worth (so a leader at 0 errors still has a margin)."""
    p = min(max(error, 1.0 / n_samples), 1.0 - 1.0 / n_samples) if n_samples > 1 else 0.5
    return math.sqrt(p * (1.0 - p) / n_samples)


def selection_pool(candidates: Sequence[Candidate], max_subcircuits: int | None = None,
                   max_runtime: float | None = None) -> list[int]:
    """Indices of the successful candidates within the limits (of all successful ones if none is)."""
    done = [i for i, c in enumerate(candidates) if not c.failed]
    return [i for i in done if within_limits(candidates[i], max_subcircuits, max_runtime)] or done


def contenders(candidates: Sequence[Candidate], n_validation: int, max_subcircuits: int | None = None,
               max_runtime: float | None = None) -> list[int]:
    """Indices of the :func:`selection_pool` members whose validation error lies within one
    :func:`standard_error` (on ``n_validation`` samples) of the lowest, in ``min_error``'s order (the
    leader first): the candidates a measurement of this size cannot tell from the leader."""
    pool = selection_pool(candidates, max_subcircuits, max_runtime)
    if not pool:
        return []
    lowest = min(candidates[i].val_error for i in pool)
    # a small tolerance: errors are multiples of 1 / n_validation, computed in floating point
    reach = lowest + standard_error(lowest, n_validation) + 1e-9
    key = selection_key("min_error")
    return sorted((i for i in pool if candidates[i].val_error <= reach), key=lambda i: key(candidates[i]))


def confirm_leader(candidates: Sequence[Candidate], reevaluate: Callable[[Candidate], Candidate],
                   budget: int, n_validation: int, max_subcircuits: int | None = None,
                   max_runtime: float | None = None) -> list[Candidate]:
    """``candidates`` with the ``min_error`` leader and its close contenders re-evaluated.

    The pool is the successful candidates within the limits (all successful ones if none is). The
    contenders are the pool's members whose search-time validation error lies within one
    :func:`standard_error` (on ``n_validation`` samples) of the lowest. Up to ``budget`` times, the
    leader (first in ``min_error``'s order; always on the front) is replaced by
    ``reevaluate(leader)`` (its errors pooled with a second measurement) if it was measured once,
    else the first contender still measured once is; it stops when neither is left. So a lucky
    leader falls back and the next one is measured in turn, and candidates level with the leader
    get a second measurement too. A re-evaluation that fails is logged and ends the confirmation
    there, the candidate keeping its search-time values. Returns a new list in the same order.
    """
    candidates = list(candidates)
    key = selection_key("min_error")
    pool = selection_pool(candidates, max_subcircuits, max_runtime)
    close = contenders(candidates, n_validation, max_subcircuits, max_runtime)
    for _ in range(budget if pool else 0):
        first = min(pool, key=lambda i: key(candidates[i]))
        leader = next((i for i in close if not candidates[i].val_errors), None) if candidates[first].val_errors \
            else first
        if leader is None:
            break
        try:
            candidates[leader] = reevaluate(candidates[leader])
        except Exception as exc:  # noqa: BLE001 - a target failure leaves the search's measurement standing
            logger.warning("re-evaluating %s failed (%s: %s); keeping its search-time validation error",
                           candidates[leader].architecture.key, type(exc).__name__, exc)
            break
        c = candidates[leader]
        logger.info("re-evaluated %s: validation error %s -> mean %.4f", c.architecture.key,
                    " / ".join(f"{e:.4f}" for e in c.val_errors), c.val_error)
    return candidates
