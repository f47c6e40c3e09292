"""NSGA-II over mixed-variable architecture genes (pymoo), with a candidate cache, checkpoints and resume.

The gene (:meth:`~qiskit_qnas.space.SearchSpace.variables`) is a dict of pymoo variables: ``Integer``
sizes and entanglement ranges, ``Choice`` embedding, rotation and per-layer entanglers, and an
optional ``Real`` log10 learning rate. pymoo's mixed-variable mating crosses and mutates each kind
with its own operators (SBX and polynomial mutation on the numbers, uniform crossover and random
choice on the categories, so a child's embedding is one of its parents' or, mutated, an allowed
one: never an index "between" two names), after NSGA-II's binary tournament; survival is NSGA-II's
rank and crowding. A repair canonicalises every gene (``encode_vars(decode_vars(gene))``), so genes
that decode to the same architecture are identical: duplicate elimination then removes them, and
the cache evaluates every architecture once per search.

The driver uses pymoo's ask-and-tell interface. After every generation it writes ``checkpoint.json``
atomically: data only (every evaluated candidate, the history, the surviving population's genes,
objectives, ranks and crowding distances, and the state of the algorithm's random generator), from
which the algorithm is rebuilt on resume, so that a search killed at any moment continues from the
last generation to the same final result. Nothing in it is executed when it is read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
from pymoo.core.evaluator import Evaluator
from pymoo.core.mixed import MixedVariableDuplicateElimination, MixedVariableMating, MixedVariableSampling
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.core.variable import Choice, Integer, Real
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.crossover.ux import UX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.mutation.rm import ChoiceRandomMutation
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.selection.tournament import TournamentSelection
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.problems.static import StaticProblem

from .objective import DEFAULT_OBJECTIVES, Objective
from .result import Candidate, atomic_write, json_default, read_run_file
from .run_schema import CHECKPOINT as CHECKPOINT_SCHEMA
from .run_schema import check
from .space import Architecture, SearchSpace

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.json"
#: the pickled checkpoint of earlier versions: refused, never read
LEGACY_CHECKPOINT = "checkpoint.pkl"
CHECKPOINT_FORMAT = "qiskit-qnas-search-checkpoint"
CHECKPOINT_VERSION = 2


class ArchitectureProblem(Problem):
    """The genes of a search space as pymoo variables, one minimised objective per entry of
    ``objectives``; evaluation happens outside (ask and tell)."""

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective] = DEFAULT_OBJECTIVES):
        if not objectives:
            raise ValueError("invalid objectives=(); allowed: a non-empty sequence of Objective")
        super().__init__(vars=space.variables(), n_obj=len(objectives))
        self.space = space
        self.objectives = tuple(objectives)


class CanonicalGene(Repair):
    """Rewrite every gene as ``encode_vars(decode_vars(gene))``: rounded into bounds, and the genes
    an architecture ignores (layers beyond ``n_layers``, ranges of range-free entanglers) fixed."""

    def _do(self, problem, X, **kwargs):
        space = problem.space
        return [space.encode_vars(space.decode_vars(x)) for x in X]


class FamilyBalancedSampling(MixedVariableSampling):
    """pymoo's mixed-variable sampling of the first population, with its embedding genes dealt out
    in turn (the families in a random order, repeated), so every embedding family starts with
    ``population_size / n_families`` members, give or take one.

    Drawn independently, a family can start with one member or none; NSGA-II then rarely visits it,
    and the front's verdict on it rests on whichever members the others' offspring happen to reach.
    A search space with one embedding is sampled exactly as by ``MixedVariableSampling``.
    """

    def _do(self, problem, n_samples, random_state=None, **kwargs):
        genes = super()._do(problem, n_samples, random_state=random_state, **kwargs)
        families = problem.space.embeddings
        if len(families) > 1:
            order = random_state.permutation(len(families))
            for k, gene in enumerate(genes):
                gene["embedding"] = families[order[k % len(families)]]
        return genes


@dataclass
class SearchState:
    """A search in progress: the algorithm (with its random state) and every evaluation."""

    algorithm: NSGA2
    evaluated: dict[str, Candidate] = field(default_factory=dict)  # architecture key -> candidate
    order: list[str] = field(default_factory=list)  # keys in evaluation order
    history: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: str = ""
    #: why the search stopped before its last generation (``stop_before``'s reason), or None
    stopped: str | None = None

    @property
    def generation(self) -> int:
        return len(self.history)


@dataclass
class Checkpoint:
    """What ``checkpoint.json`` holds, read and checked (see :func:`read_checkpoint`)."""

    path: Path
    fingerprint: str
    search_space: dict[str, Any]
    population_size: int
    seed: int
    history: list[dict[str, Any]]
    candidates: list[Candidate]  # in evaluation order
    genes: list[dict[str, Any]]  # the surviving population, in the algorithm's order
    objectives: np.ndarray
    rank: list[int]
    crowding: list[float]
    random_state: dict[str, Any]

    @property
    def generation(self) -> int:
        return len(self.history)


def make_algorithm(space: SearchSpace, population_size: int, seed: int,
                   objectives: Sequence[Objective] = DEFAULT_OBJECTIVES) -> tuple[NSGA2, ArchitectureProblem]:
    problem = ArchitectureProblem(space, objectives)
    canonical = CanonicalGene()
    mating = MixedVariableMating(
        selection=TournamentSelection(func_comp=binary_tournament),
        crossover={Integer: SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                   Real: SBX(prob=0.9, eta=15), Choice: UX()},
        mutation={Integer: PM(eta=20, vtype=float, repair=RoundingRepair()), Real: PM(eta=20),
                  Choice: ChoiceRandomMutation()},
        repair=canonical, eliminate_duplicates=MixedVariableDuplicateElimination())
    algorithm = NSGA2(pop_size=population_size, sampling=FamilyBalancedSampling(), mating=mating,
                      survival=RankAndCrowding(), repair=canonical,
                      eliminate_duplicates=MixedVariableDuplicateElimination())
    return algorithm, problem


def set_objectives(algorithm: NSGA2, population: Population, objectives: np.ndarray) -> None:
    """Set the objectives (and pymoo's derived constraint violation) of ``population``."""
    Evaluator().eval(StaticProblem(algorithm.problem, F=np.asarray(objectives, dtype=float)), population)


# ------------------------------------------------------------------------------------------------
# checkpoint.json
# ------------------------------------------------------------------------------------------------
def checkpoint_data(state: SearchState, space: SearchSpace, population_size: int, seed: int) -> dict[str, Any]:
    """The JSON form of ``state`` after a completed generation."""
    population = state.algorithm.pop
    return {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "fingerprint": state.fingerprint,
        "search_space": space.to_dict(), "population_size": population_size, "seed": seed,
        "generation": state.generation, "history": state.history,
        "candidates": [state.evaluated[k].to_dict() for k in state.order],
        "population": [{"gene": ind.X, "objectives": ind.F.tolist(), "rank": int(ind.get("rank")),
                        "crowding": float(ind.get("crowding"))} for ind in population],
        "random_state": state.algorithm.random_state.bit_generator.state,
    }


def save_checkpoint(path: Path, state: SearchState, space: SearchSpace, population_size: int, seed: int) -> None:
    data = checkpoint_data(state, space, population_size, seed)
    atomic_write(path, json.dumps(data, indent=1, default=json_default))


def _refuse(path: Path, why: str) -> ValueError:
    return ValueError(f"{path}: {why}; delete it to start the search again, or use another run directory")


def read_checkpoint(directory: str | Path, fingerprint: str | None = None) -> Checkpoint | None:
    """The search checkpoint of ``directory``, read and checked; None when it holds none.

    Raises ValueError (one line, naming the file) for a ``checkpoint.pkl`` of an older version
    (never unpickled), a ``checkpoint.json`` that is not a readable checkpoint of this version, or
    one of a search with another ``fingerprint``.
    """
    directory = Path(directory)
    legacy = directory / LEGACY_CHECKPOINT
    if legacy.exists():
        raise ValueError(f"{legacy} was written by an older qiskit-qnas (a pickle, which is never loaded because "
                         f"reading it could run code); start a new run directory")
    path = directory / CHECKPOINT
    if not path.exists():
        return None
    try:
        data = json.loads(read_run_file(path).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _refuse(path, f"not a readable qiskit-qnas search checkpoint ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise _refuse(path, "not a qiskit-qnas search checkpoint")
    if data.get("version") != CHECKPOINT_VERSION:
        raise _refuse(path, f"a search checkpoint of version {data.get('version')!r}, this qiskit-qnas reads "
                            f"version {CHECKPOINT_VERSION}")
    try:
        checkpoint = _checkpoint_from_data(path, data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _refuse(path, f"a damaged search checkpoint ({type(exc).__name__}: {' '.join(str(exc).split())})") \
            from None
    if fingerprint is not None and checkpoint.fingerprint and checkpoint.fingerprint != fingerprint:
        raise ValueError(f"{path} belongs to a search with other settings; use another checkpoint directory "
                         "or delete it to start again")
    return checkpoint


def _checkpoint_from_data(path: Path, data: dict[str, Any]) -> Checkpoint:
    check(CHECKPOINT_SCHEMA, data)  # types and ranges: a non-empty population and history, 1+ objectives each
    space = SearchSpace.from_dict(data["search_space"])
    population = data["population"]
    genes = [dict(p["gene"]) for p in population]
    for gene in genes:
        space.decode_vars(gene)
    # members with different numbers of objectives make no 2-D array: numpy's ValueError refuses them
    objectives = np.array([[float(v) for v in p["objectives"]] for p in population], dtype=float)
    history = data["history"]
    if data["generation"] != len(history):
        raise ValueError(f"generation {data['generation']!r} but {len(history)} generations of history")
    random_state = data["random_state"]
    np.random.default_rng().bit_generator.state = random_state  # refuses a state that is not PCG64's
    return Checkpoint(
        path=path, fingerprint=str(data["fingerprint"]), search_space=space.to_dict(),
        population_size=int(data["population_size"]), seed=int(data["seed"]), history=history,
        candidates=[Candidate.from_dict(c) for c in data["candidates"]], genes=genes, objectives=objectives,
        rank=[int(p["rank"]) for p in population], crowding=[float(p["crowding"]) for p in population],
        random_state=random_state)


def resume_state(checkpoint: Checkpoint, space: SearchSpace, population_size: int, seed: int,
                 n_generations: int, objectives: Sequence[Objective] = DEFAULT_OBJECTIVES) -> SearchState:
    """The search of ``checkpoint`` rebuilt: NSGA-II after its last completed generation, in the
    state the uninterrupted run has there (population in order, with objectives, ranks and
    crowding distances; the random generator's state)."""
    if (checkpoint.search_space != space.to_dict() or checkpoint.population_size != population_size
            or checkpoint.seed != seed or checkpoint.objectives.shape[1] != len(objectives)):
        raise ValueError(f"{checkpoint.path} belongs to a search with other settings (search space, "
                         "population_size, seed or objectives); use another checkpoint directory or delete it to "
                         "start again")
    algorithm, problem = make_algorithm(space, population_size, seed, objectives)
    algorithm.setup(problem, termination=("n_gen", n_generations), seed=seed, verbose=False)
    population = Population.new(X=[dict(g) for g in checkpoint.genes])
    set_objectives(algorithm, population, checkpoint.objectives)
    population.set("rank", np.array(checkpoint.rank), "crowding", np.array(checkpoint.crowding))
    algorithm.pop = population
    algorithm.random_state.bit_generator.state = checkpoint.random_state
    algorithm.is_initialized = True
    algorithm.start_time = time.time()  # pymoo's wall clock, reported in its Result only
    # what Algorithm._post_advance leaves after generation g: termination updated at g, counter g + 1
    algorithm.n_iter = checkpoint.generation
    algorithm.termination.update(algorithm)
    algorithm.n_iter = checkpoint.generation + 1
    evaluated = {c.architecture.key: c for c in checkpoint.candidates}
    return SearchState(algorithm=algorithm, evaluated=evaluated, order=list(evaluated),
                       history=list(checkpoint.history), fingerprint=checkpoint.fingerprint)


# ------------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------------
def check_objective_count(candidates: Sequence[Candidate], objectives: Sequence[Objective]) -> None:
    """A clear error when ``evaluate`` returned candidates of other objectives than the search's."""
    for candidate in candidates:
        if len(candidate.objectives) != len(objectives):
            raise ValueError(f"candidate {candidate.architecture.key} has {len(candidate.objectives)} objectives; "
                             f"the search minimises {len(objectives)}: {', '.join(o.name for o in objectives)}")


def run_nsga2(space: SearchSpace, evaluate: Callable[[Sequence[Architecture], int], list[Candidate]],
              population_size: int = 16, n_generations: int = 8, seed: int = 0,
              checkpoint_dir: str | Path | None = None, fingerprint: str = "",
              callback: Callable[[int, list[Candidate]], None] | None = None,
              progress: Callable[[int, dict[str, Any]], None] | None = None,
              objectives: Sequence[Objective] = DEFAULT_OBJECTIVES,
              stop_before: Callable[[Sequence[Architecture], int, SearchState], str | None] | None = None
              ) -> SearchState:
    """Run NSGA-II; ``evaluate(archs, generation)`` returns one candidate per (new) architecture.

    Args:
        space: the search space.
        evaluate: evaluates a list of distinct, not yet evaluated architectures.
        population_size, n_generations, seed: NSGA-II settings (the initial population counts as
            generation 1).
        checkpoint_dir: when given, ``checkpoint.json`` is written there after every generation and
            an existing one is resumed.
        fingerprint: identifies the search settings; a checkpoint of other settings is refused.
        callback: called with (generation, the generation's candidates) after every generation.
        progress: called with (generation, history entry) after every generation.
        objectives: what every candidate's ``objectives`` holds, in order (NSGA-II minimises one
            per entry).
        stop_before: called with (the generation's new architectures, generation, state) before
            they are evaluated; a reason returned stops the search there (``state.stopped``), its
            checkpoint left at the last complete generation, so that a resumed run evaluates the
            same generation next.
    """
    if population_size < 2:
        raise ValueError(f"invalid population_size={population_size!r}; allowed: an integer >= 2")
    if n_generations < 1:
        raise ValueError(f"invalid n_generations={n_generations!r}; allowed: an integer >= 1")
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT
    checkpoint = None if checkpoint_dir is None else read_checkpoint(checkpoint_dir, fingerprint)
    if checkpoint is not None:
        state = resume_state(checkpoint, space, population_size, seed, n_generations, objectives)
        logger.info("resuming the search from %s at generation %d", path, state.generation)
    else:
        algorithm, problem = make_algorithm(space, population_size, seed, objectives)
        algorithm.setup(problem, termination=("n_gen", n_generations), seed=seed, verbose=False)
        state = SearchState(algorithm=algorithm, fingerprint=fingerprint)
    algorithm = state.algorithm
    while algorithm.has_next():
        population = algorithm.ask()
        if population is None or len(population) == 0:  # mating found no new gene: the space is exhausted
            break
        archs = [space.decode_vars(g) for g in population.get("X")]
        generation = state.generation + 1
        new = list(dict.fromkeys(a for a in archs if a.key not in state.evaluated))
        if stop_before is not None and new:
            state.stopped = stop_before(new, generation, state)
            if state.stopped:
                logger.warning("the search stops before generation %d: %s", generation, state.stopped)
                break
        for candidate in evaluate(new, generation) if new else []:
            state.evaluated[candidate.architecture.key] = candidate
            state.order.append(candidate.architecture.key)
        candidates = [state.evaluated[a.key] for a in archs]
        check_objective_count(candidates, objectives)
        set_objectives(algorithm, population, np.array([c.objectives for c in candidates]))
        algorithm.tell(infills=population)
        done = [c for c in state.evaluated.values() if not c.failed]
        entry = {"generation": generation, "n_evaluated": len(state.evaluated), "n_new": len(new),
                 "best_val_error": min((c.val_error for c in done), default=None),  # None: every one failed
                 "n_failed": sum(c.failed for c in state.evaluated.values())}
        state.history.append(entry)
        if path is not None:
            save_checkpoint(path, state, space, population_size, seed)
        if callback is not None:
            callback(generation, candidates)
        if progress is not None:
            progress(generation, entry)
    return state
