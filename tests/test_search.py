"""NSGA-II driver: canonical genes, evaluation cache, callbacks, checkpoints and resume."""

import numpy as np
import pytest

from qiskit_qnas import SearchSpace
from qiskit_qnas.result import Candidate, SearchResult, dominates, pareto_mask
from qiskit_qnas.search import CHECKPOINT, read_checkpoint, run_nsga2

SPACE = SearchSpace(qubits=(2, 5), layers=(1, 3), ranges=(1, 2))


def synthetic(archs, generation, calls=None):
    """A deterministic stand-in for candidate evaluation: three conflicting objectives."""
    if calls is not None:
        calls.extend(a.key for a in archs)
    out = []
    for a in archs:
        pairs = sum(len(e) for e in a.entangler)
        error = 1.0 / (a.n_qubits * a.n_layers) + 0.01 * len(a.embedding) + 0.001 * pairs
        objectives = (error, float(a.n_qubits * a.n_layers + pairs), float(a.n_qubits))
        out.append(Candidate(architecture=a, val_error=error, runtime_proxy=objectives[1],
                             n_subcircuits=a.n_qubits, objectives=objectives, generation=generation))
    return out


def test_every_architecture_is_evaluated_once_and_generations_are_reported():
    calls, seen = [], []
    state = run_nsga2(SPACE, lambda a, g: synthetic(a, g, calls), population_size=10, n_generations=5, seed=1,
                      callback=lambda g, cands: seen.append((g, len(cands))))
    assert len(calls) == len(set(calls)) == len(state.evaluated)
    assert [g for g, _ in seen] == [1, 2, 3, 4, 5]
    assert all(n == 10 for _, n in seen)
    assert [h["generation"] for h in state.history] == [1, 2, 3, 4, 5]
    assert all(SPACE.decode(SPACE.encode(c.architecture)) == c.architecture for c in state.evaluated.values())
    assert all(c.architecture in SPACE for c in state.evaluated.values())


def test_same_seed_same_search_and_other_seed_differs():
    a = run_nsga2(SPACE, synthetic, population_size=8, n_generations=4, seed=7)
    b = run_nsga2(SPACE, synthetic, population_size=8, n_generations=4, seed=7)
    c = run_nsga2(SPACE, synthetic, population_size=8, n_generations=4, seed=8)
    assert a.order == b.order
    assert a.order != c.order


def test_search_improves_on_the_initial_population():
    state = run_nsga2(SPACE, synthetic, population_size=12, n_generations=8, seed=0)
    first = [c.val_error for c in state.evaluated.values() if c.generation == 1]
    assert state.history[-1]["best_val_error"] <= min(first)
    assert state.history[-1]["n_evaluated"] > 12


def test_interrupted_search_resumes_to_the_same_result(tmp_path):
    full = run_nsga2(SPACE, synthetic, population_size=8, n_generations=5, seed=3)

    class Interrupt(Exception):
        pass

    def stop_after_two(generation, candidates):
        if generation == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_nsga2(SPACE, synthetic, population_size=8, n_generations=5, seed=3, checkpoint_dir=tmp_path,
                  fingerprint="f", callback=stop_after_two)
    assert read_checkpoint(tmp_path).generation == 2
    calls = []
    resumed = run_nsga2(SPACE, lambda a, g: synthetic(a, g, calls), population_size=8, n_generations=5, seed=3,
                        checkpoint_dir=tmp_path, fingerprint="f")
    assert resumed.order == full.order
    assert not set(calls) & {k for k in full.order[:len(full.order) - len(calls)]}
    with pytest.raises(ValueError, match="other settings"):
        run_nsga2(SPACE, synthetic, population_size=8, n_generations=5, seed=3, checkpoint_dir=tmp_path,
                  fingerprint="g")


def test_front_is_non_dominated_and_complete():
    state = run_nsga2(SPACE, synthetic, population_size=10, n_generations=4, seed=5)
    result = SearchResult([state.evaluated[k] for k in state.order])
    front = result.pareto_front
    assert len(front) > 1
    for member in front:
        assert not any(dominates(other.objectives, member.objectives) for other in result.candidates)
    for candidate in result.candidates:
        if candidate not in front:
            assert any(dominates(member.objectives, candidate.objectives) for member in front)


def test_pareto_mask_matches_a_brute_force_definition():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4, size=(40, 3)).astype(float)
    expected = [not any(dominates(values[j], values[i]) for j in range(len(values))) for i in range(len(values))]
    assert pareto_mask(values).tolist() == expected


@pytest.mark.parametrize("kwargs, match", [({"population_size": 1}, "population_size"),
                                           ({"n_generations": 0}, "n_generations")])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_nsga2(SPACE, synthetic, **{"population_size": 4, "n_generations": 1, **kwargs})
