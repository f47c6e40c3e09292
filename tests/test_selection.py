"""Choosing the model: the min_error leader confirmed by re-evaluation, pooled measurements, limits."""

import dataclasses
import logging

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from qiskit_qnas import Architecture, SearchSpace
from qiskit_qnas.model import predict_logits
from qiskit_qnas.objectives import EvaluationContext, candidate_seed, evaluate_candidate, reevaluate_candidate
from qiskit_qnas.result import Candidate, SearchResult
from qiskit_qnas.selection import confirm_leader, select, standard_error
from qiskit_qnas.supercircuit import SuperCircuit, finetune, train_supercircuit
from qiskit_qnas.targets import resolve_target


def candidate(n_qubits: int, val_error: float, runtime: float = 1.0, n_subcircuits: int = 1, **kwargs) -> Candidate:
    return Candidate(architecture=Architecture(n_qubits, 1), val_error=val_error, runtime_proxy=runtime,
                     n_subcircuits=n_subcircuits, objectives=(val_error, runtime, n_subcircuits),
                     val_accuracy=1 - val_error, val_loss=0.5, **kwargs)


def remeasured(errors: dict[int, float], calls: list[int]):
    """A re-evaluation that pools the search's error with ``errors[n_qubits]`` and records who was asked."""
    def reevaluate(c: Candidate) -> Candidate:
        calls.append(c.architecture.n_qubits)
        pooled = (c.val_error + errors[c.architecture.n_qubits]) / 2
        return dataclasses.replace(c, val_error=pooled, val_errors=[c.val_error, errors[c.architecture.n_qubits]],
                                   objectives=(pooled, *c.objectives[1:]))
    return reevaluate


def test_a_lucky_leader_falls_back_and_the_next_one_is_measured_in_turn():
    # 2 qubits leads on a lucky 0.02 (0.10 when measured again); 3 qubits confirms its 0.04
    pool = [candidate(2, 0.02, runtime=1.0), candidate(3, 0.04, runtime=5.0), candidate(4, 0.05, runtime=9.0)]
    calls = []
    confirmed = confirm_leader(pool, remeasured({2: 0.10, 3: 0.04, 4: 0.05}, calls), budget=3, n_validation=10**6)
    assert calls == [2, 3]  # the leader, then the new leader, which held
    assert [c.val_error for c in confirmed] == pytest.approx([0.06, 0.04, 0.05])
    assert [c.architecture for c in confirmed] == [c.architecture for c in pool]  # order kept
    assert pool[0].val_errors == []  # the input is not changed
    result = SearchResult(confirmed)
    chosen = select(result.pareto_front, "min_error")
    assert chosen.architecture.n_qubits == 3 and chosen.val_errors == [0.04, 0.04]
    # without re-evaluation the lucky one is chosen
    assert select(SearchResult(pool).pareto_front, "min_error").architecture.n_qubits == 2


def test_the_budget_caps_the_re_evaluations():
    pool = [candidate(2, 0.01), candidate(3, 0.02), candidate(4, 0.03)]
    calls = []
    confirm_leader(pool, remeasured({2: 0.2, 3: 0.2, 4: 0.2}, calls), budget=2, n_validation=10**6)
    assert calls == [2, 3]
    assert confirm_leader(pool, remeasured({}, calls := []), budget=0, n_validation=100) == pool and calls == []


def test_contenders_within_a_standard_error_of_the_leader_are_measured_too():
    # 250 validation samples: 5 errors (0.02) ties the leader exactly, 7 lie within one standard error
    # (0.0089) of it, 8 do not; the cheaper runtime alone would choose 2 qubits
    pool = [candidate(2, 0.020, runtime=1.0), candidate(3, 0.020, runtime=9.0), candidate(4, 0.028, runtime=2.0),
            candidate(5, 0.032, runtime=1.0)]
    calls = []
    confirmed = confirm_leader(pool, remeasured({2: 0.020, 3: 0.008, 4: 0.040, 5: 0.0}, calls), budget=5,
                               n_validation=250)
    assert calls == [2, 3, 4]  # the leader, then its contenders in min_error's order; 5 qubits is no contender
    chosen = select(SearchResult(confirmed).pareto_front, "min_error")
    assert chosen.architecture.n_qubits == 3 and chosen.val_errors == [0.020, 0.008]
    calls.clear()
    confirm_leader(pool, remeasured({2: 0.020, 3: 0.008, 4: 0.040}, calls), budget=2, n_validation=250)
    assert calls == [2, 3]  # the budget counts every re-evaluation


def test_the_standard_error_is_the_binomial_one_and_never_zero():
    assert standard_error(0.02, 250) == pytest.approx((0.02 * 0.98 / 250) ** 0.5)
    assert standard_error(0.0, 30) == pytest.approx(standard_error(1 / 30, 30))  # one sample's worth
    assert standard_error(0.0, 30) > 0.03
    assert standard_error(1.0, 30) == pytest.approx(standard_error(1 / 30, 30))


def test_limits_and_failed_candidates_are_respected():
    failed = dataclasses.replace(candidate(5, 0.0), failed=True, error="boom")
    pool = [failed, candidate(2, 0.01, n_subcircuits=3), candidate(3, 0.02)]
    calls = []
    confirm_leader(pool, remeasured({3: 0.02}, calls), budget=3, n_validation=10**6, max_subcircuits=2)
    assert calls == [3]  # neither the failed one nor the one above the limit


def test_a_failing_re_evaluation_keeps_the_search_time_candidate(caplog):
    pool = [candidate(2, 0.01), candidate(3, 0.02)]

    def broken(c):
        raise RuntimeError("the backend is down")

    with caplog.at_level(logging.WARNING, logger="qiskit_qnas.selection"):
        confirmed = confirm_leader(pool, broken, budget=3, n_validation=100)
    assert confirmed == pool
    assert "the backend is down" in caplog.text


@pytest.fixture(scope="module")
def digits_context():
    X, y = load_digits(return_X_y=True)
    keep = y < 4
    X_train, X_val, y_train, y_val = train_test_split((X[keep] / 16).astype(np.float32), y[keep], test_size=0.3,
                                                      stratify=y[keep], random_state=0)
    space = SearchSpace(qubits=(2, 3), layers=(1, 2), embeddings=("angle_y",))
    supercircuit = SuperCircuit(space, X.shape[1], 4, seed=0)
    train_supercircuit(supercircuit, X_train, y_train, epochs=2, seed=0)
    return EvaluationContext(supercircuit=supercircuit, X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val,
                             qubit_budget=2, finetune_epochs=1, finetune_samples=100, target=resolve_target(None))


def test_reevaluation_pools_a_second_fine_tuning_with_the_final_recipe(digits_context):
    context = digits_context
    arch = Architecture(3, 1, "angle_y", "ry", "chain")
    first = evaluate_candidate(arch, context)
    again = reevaluate_candidate(first, context, epochs=3)
    # the second measurement, computed independently: the final recipe on the whole training split,
    # predicted by the exact engine
    model = finetune(context.supercircuit, arch, context.X_train, context.y_train, 3,
                     batch_size=context.batch_size, lr=context.learning_rate, seed=candidate_seed(context.seed, arch))
    logits = torch.as_tensor(predict_logits(model, context.X_val))
    second = 1 - float((logits.argmax(1).numpy() == context.y_val).mean())
    loss = float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(context.y_val)))
    assert again.val_errors == pytest.approx([first.val_error, second])
    assert again.val_error == pytest.approx((first.val_error + second) / 2)
    assert again.val_accuracy == pytest.approx(1 - again.val_error)
    assert again.val_loss == pytest.approx((first.val_loss + loss) / 2, rel=1e-5)
    assert again.objectives == (again.val_error, *first.objectives[1:])
    assert (again.runtime, again.cutting, again.weights) == (first.runtime, first.cutting, first.weights)
    with pytest.raises(ValueError, match="not yet re-evaluated"):
        reevaluate_candidate(again, context, epochs=3)
    assert Candidate.from_dict(again.to_dict()) == again
