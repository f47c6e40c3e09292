"""NSGA-II over architecture genes (pymoo), with a candidate cache, checkpoints and resume.

The gene of :class:`~qiskit_qnas.space.SearchSpace` is integer (plus an optional real log10
learning rate). pymoo's real-valued SBX crossover and polynomial mutation act on it and a repair
rounds the integer genes and canonicalises every gene (``encode(decode(gene))``), so genes that
decode to the same architecture are identical: pymoo's duplicate elimination then removes them, and
the cache evaluates every architecture once per search.

The driver uses pymoo's ask-and-tell interface; after every generation it writes a checkpoint (the
pickled algorithm, including its random generator, and every evaluated candidate) atomically, so a
search killed at any moment resumes from the last generation to the same final result.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.evaluator import Evaluator
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.sampling.rnd import FloatRandomSampling
from pymoo.problems.static import StaticProblem

from .result import Candidate, atomic_write
from .space import Architecture, SearchSpace

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pkl"
_CHECKPOINT_VERSION = 1


class ArchitectureProblem(Problem):
    """The gene bounds of a search space, three minimised objectives; evaluation happens outside
    (ask and tell), so the problem pickles small."""

    def __init__(self, space: SearchSpace):
        low, high = space.gene_bounds
        super().__init__(n_var=space.n_genes, n_obj=3, xl=low, xu=high)
        self.space = space


class CanonicalGene(Repair):
    """Round the integer genes into bounds and rewrite every gene as ``encode(decode(gene))``."""

    def _do(self, problem, X, **kwargs):
        space = problem.space
        return np.array([space.encode(space.decode(x)) for x in X], dtype=float)


@dataclass
class SearchState:
    """What a checkpoint holds: the algorithm (with its random state) and every evaluation."""

    algorithm: Any
    evaluated: dict[str, Candidate] = field(default_factory=dict)  # architecture key -> candidate
    order: list[str] = field(default_factory=list)  # keys in evaluation order
    history: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: str = ""
    version: int = _CHECKPOINT_VERSION

    @property
    def generation(self) -> int:
        return len(self.history)


def make_algorithm(space: SearchSpace, population_size: int, seed: int) -> tuple[NSGA2, ArchitectureProblem]:
    problem = ArchitectureProblem(space)
    algorithm = NSGA2(pop_size=population_size, sampling=FloatRandomSampling(),
                      crossover=SBX(prob=0.9, eta=15, vtype=float), mutation=PM(eta=20, vtype=float),
                      repair=CanonicalGene(), eliminate_duplicates=True)
    return algorithm, problem


def save_checkpoint(path: Path, state: SearchState) -> None:
    atomic_write(path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))


def load_checkpoint(path: Path, fingerprint: str | None = None) -> SearchState:
    with open(path, "rb") as f:
        state = pickle.load(f)
    if not isinstance(state, SearchState) or state.version != _CHECKPOINT_VERSION:
        raise ValueError(f"{path} is not a qiskit-qnas search checkpoint of this version")
    if fingerprint is not None and state.fingerprint and state.fingerprint != fingerprint:
        raise ValueError(f"{path} belongs to a search with other settings; use another checkpoint directory "
                         "or delete it to start again")
    return state


def run_nsga2(space: SearchSpace, evaluate: Callable[[Sequence[Architecture], int], list[Candidate]],
              population_size: int = 16, n_generations: int = 8, seed: int = 0,
              checkpoint_dir: str | Path | None = None, fingerprint: str = "",
              callback: Callable[[int, list[Candidate]], None] | None = None,
              progress: Callable[[int, dict[str, Any]], None] | None = None) -> SearchState:
    """Run NSGA-II; ``evaluate(archs, generation)`` returns one candidate per (new) architecture.

    Args:
        space: the search space.
        evaluate: evaluates a list of distinct, not yet evaluated architectures.
        population_size, n_generations, seed: NSGA-II settings (the initial population counts as
            generation 1).
        checkpoint_dir: when given, ``checkpoint.pkl`` is written there after every generation and
            an existing one is resumed.
        fingerprint: identifies the search settings; a checkpoint of other settings is refused.
        callback: called with (generation, the generation's candidates) after every generation.
        progress: called with (generation, history entry) after every generation.
    """
    if population_size < 2:
        raise ValueError(f"invalid population_size={population_size!r}; allowed: an integer >= 2")
    if n_generations < 1:
        raise ValueError(f"invalid n_generations={n_generations!r}; allowed: an integer >= 1")
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT
    if path is not None and path.exists():
        state = load_checkpoint(path, fingerprint)
        logger.info("resuming the search from %s at generation %d", path, state.generation)
    else:
        algorithm, problem = make_algorithm(space, population_size, seed)
        algorithm.setup(problem, termination=("n_gen", n_generations), seed=seed, verbose=False)
        state = SearchState(algorithm=algorithm, fingerprint=fingerprint)
    algorithm = state.algorithm
    while algorithm.has_next():
        population = algorithm.ask()
        genes = population.get("X")
        archs = [space.decode(g) for g in genes]
        generation = state.generation + 1
        new = list(dict.fromkeys(a for a in archs if a.key not in state.evaluated))
        for candidate in evaluate(new, generation) if new else []:
            state.evaluated[candidate.architecture.key] = candidate
            state.order.append(candidate.architecture.key)
        candidates = [state.evaluated[a.key] for a in archs]
        Evaluator().eval(StaticProblem(algorithm.problem, F=np.array([c.objectives for c in candidates])),
                         population)
        algorithm.tell(infills=population)
        done = [c for c in state.evaluated.values() if not c.failed]
        entry = {"generation": generation, "n_evaluated": len(state.evaluated), "n_new": len(new),
                 "best_val_error": min((c.val_error for c in done), default=float("nan")),
                 "n_failed": sum(c.failed for c in state.evaluated.values())}
        state.history.append(entry)
        if path is not None:
            save_checkpoint(path, state)
        if callback is not None:
            callback(generation, candidates)
        if progress is not None:
            progress(generation, entry)
    return state
