"""Searches a user can afford on IBM hardware: the runtime objective as IBM bills QPU time (every shot
followed by the repetition delay), the QPU plan and budget, the multi-fidelity search that measures
on the device only what its emulation cannot decide, and scoring on any backend. The device is
FakeManilaV2 in qiskit-ibm-runtime's local testing mode (its Aer emulation of the device)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime.fake_provider import FakeManilaV2
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from qiskit_qnas import Architecture, QNASEstimator, SearchSpace
from qiskit_qnas.fidelity import decision_margins, shots_for_margins
from qiskit_qnas.objectives import EvaluationContext, evaluate_candidate, target_logits
from qiskit_qnas.qpu_budget import QPUBudgetError, costliest_members, plan_search
from qiskit_qnas.result import Candidate
from qiskit_qnas.runtime_proxy import DEFAULT_JOB_OVERHEAD, DEFAULT_REP_DELAY
from qiskit_qnas.supercircuit import SuperCircuit
from qiskit_qnas.targets import ExactTarget, resolve_target

X, Y = load_iris(return_X_y=True)
X_TRAIN, X_TEST, Y_TRAIN, Y_TEST = train_test_split(X, Y, test_size=0.3, stratify=Y, random_state=0)
ARCH = Architecture(3, 2, "angle_y", "ry", ("chain", "chain"))
TINY = dict(search_space=SearchSpace(qubits=(2, 3), layers=(1, 2)), qubit_budget=2, population_size=4,
            n_generations=1, supercircuit_epochs=10, finetune_epochs=1, verbose=0, random_state=0)


@pytest.fixture(scope="module")
def manila():
    return FakeManilaV2()


def billed(estimate, rep_delay: float, measure: float = 0.0) -> float:
    """The documented formula (README, qiskit_qnas.runtime_proxy), from the estimate's own counts."""
    return (estimate.n_circuits * estimate.executions_per_circuit * (estimate.critical_path_seconds + rep_delay)
            + estimate.n_jobs * (estimate.calibration_executions * (measure + rep_delay) + DEFAULT_JOB_OVERHEAD))


# --- the runtime objective ------------------------------------------------------------------------
def test_a_candidate_on_a_runtime_target_is_billed_the_repetition_delay_of_every_shot(manila):
    rep_delay = manila.configuration().default_rep_delay
    assert rep_delay == 250e-6
    target = resolve_target(manila)  # Runtime local testing mode, 4096 shots (Runtime's default precision)
    context = EvaluationContext(supercircuit=SuperCircuit(TINY["search_space"], 4, 3, seed=0), X_train=X_TRAIN,
                                y_train=Y_TRAIN, X_val=X_TEST[:20], y_val=Y_TEST[:20], target=target,
                                qubit_budget=2, finetune_epochs=0)
    found = evaluate_candidate(ARCH, context)
    runtime = found.runtime
    assert not found.failed and runtime.shots == 4096 and runtime.n_circuits == 20 and runtime.n_jobs == 1
    floor = runtime.shots * runtime.n_circuits * rep_delay
    assert found.runtime_proxy >= floor
    assert found.runtime_proxy == pytest.approx(billed(runtime, rep_delay), rel=0.05)
    # the delay dominates: the circuit's own duration is a few percent of what is billed
    assert runtime.critical_path_seconds * runtime.shots * runtime.n_circuits < 0.5 * floor
    # measured on the device: the whole estimate is accounted, and where it came from is recorded
    assert found.qpu_seconds == pytest.approx(found.runtime_proxy)
    assert found.measurements == [{"source": "runtime-local:fake_manila", "kind": "device",
                                   "val_error": found.val_error, "n_samples": 20, "shots": 4096,
                                   "qpu_seconds": found.qpu_seconds}]


def test_the_repetition_delay_comes_from_the_backend_the_option_or_the_default(manila):
    backend_delay = resolve_target(manila).runtime_estimate(ARCH, 10)
    assert backend_delay.rep_delay == 250e-6
    optioned = resolve_target(manila, runtime_options={"rep_delay": 100e-6})
    faster = optioned.runtime_estimate(ARCH, 10)
    assert faster.rep_delay == 100e-6 and optioned.estimator_options().execution.rep_delay == 100e-6
    assert faster.seconds == pytest.approx(billed(faster, 100e-6))
    assert faster.seconds < backend_delay.seconds
    # a simulator reports no delay: the documented default; a target's own setting wins over the backend's
    assert ExactTarget(GenericBackendV2(5)).shot_delay() == DEFAULT_REP_DELAY
    exact = resolve_target(None)
    exact.rep_delay = 0.0
    estimate = exact.runtime_estimate(ARCH, 10)
    assert estimate.seconds == pytest.approx(billed(estimate, 0.0))
    with pytest.raises(ValueError, match="rep_delay"):
        resolve_target(manila, runtime_options={"rep_delay": -1})


@pytest.mark.parametrize("options, factor", [({"resilience_level": 2}, 3), ({"twirling": {
    "enable_gates": True, "num_randomizations": 10, "shots_per_randomization": 200}}, 1)])
def test_mitigation_multiplies_the_billed_shots(manila, options, factor):
    shots, n = 1024, 12
    plain = resolve_target(manila, shots=shots).runtime_estimate(ARCH, n)
    mitigated = resolve_target(manila, shots=shots, runtime_options=options).runtime_estimate(ARCH, n)
    measured = resolve_target(manila, shots=shots).isa(ARCH)[0].layout.final_index_layout()[:3]
    measure = max(manila.target["measure"][(q,)].duration for q in measured)
    assert mitigated.executions_per_circuit >= factor * shots
    assert mitigated.seconds == pytest.approx(billed(mitigated, 250e-6, measure))
    ratio = mitigated.executions_per_circuit / shots
    assert mitigated.seconds > 0.9 * ratio * (plain.seconds - DEFAULT_JOB_OVERHEAD)


# --- the plan and the budget --------------------------------------------------------------------
def test_the_plan_costs_every_evaluation_at_the_space_s_costliest_member(manila):
    space = SearchSpace(qubits=(2, 4), layers=(1, 2), embeddings=("angle_y", "amplitude"))
    target = resolve_target(manila)
    members = costliest_members(space)
    assert [m.embedding for m in members] == ["angle_y", "amplitude"]
    assert all(m.n_qubits == 4 and m.n_layers == 2 and m.entangler == ("full", "full") for m in members)
    plan = plan_search(target, space, fidelity="target", population_size=5, n_generations=3, n_validation=21,
                       reevaluations=2, max_qpu_seconds=100.0)
    one = max(target.runtime_estimate(m, 21).seconds for m in members)
    assert plan.seconds == pytest.approx(17 * one) and plan.first_step_seconds == pytest.approx(5 * one)
    assert not plan.fits and "exceeds the budget" in plan.summary()
    # every sampled member costs at most the plan's figure
    rng = np.random.default_rng(0)
    assert max(target.runtime_estimate(space.sample(rng), 21).seconds for _ in range(20)) <= one
    multi = plan_search(target, space, fidelity="multi", population_size=5, n_generations=3, n_validation=500,
                        device_confirmations=3, device_samples=100)
    assert multi.items[0].seconds == 0 and multi.items[1].circuits == 100
    assert multi.seconds == pytest.approx(3 * max(target.runtime_estimate(m, 100).seconds for m in members))
    assert plan_search(resolve_target(None), space, fidelity="target", population_size=5, n_generations=3,
                       n_validation=21) is None


def test_a_budget_the_first_step_cannot_fit_is_refused_before_any_job(tmp_path):
    run_dir = tmp_path / "run"
    est = QNASEstimator(backend=FakeManilaV2(), max_qpu_seconds=1, checkpoint_dir=str(run_dir), **TINY)
    with pytest.raises(QPUBudgetError) as refused:
        est.fit(X_TRAIN, Y_TRAIN)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("invalid max_qpu_seconds=1:")
    assert "allowed: max_qpu_seconds >=" in message
    assert not run_dir.exists() and not hasattr(est, "target_")  # nothing written, no target opened
    with pytest.raises(ValueError, match="max_qpu_seconds"):
        QNASEstimator(backend=FakeManilaV2(), max_qpu_seconds=-1, **TINY).fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(ValueError, match="fidelity"):
        QNASEstimator(fidelity="multi", **TINY).fit(X_TRAIN, Y_TRAIN)  # no device to emulate


def test_multi_fidelity_measures_on_the_device_only_what_the_emulation_cannot_separate(capsys):
    est = QNASEstimator(backend=FakeManilaV2(), max_qpu_seconds=600, **{**TINY, "verbose": 1})
    est.fit(X_TRAIN, Y_TRAIN)
    printed = capsys.readouterr().out
    assert "QPU plan on runtime-local:fake_manila (multi-fidelity search)" in printed
    result = est.result_
    plan = result.qpu_plan
    assert plan["fidelity"] == "multi" and plan["max_qpu_seconds"] == 600 and plan["seconds"] <= 600
    n_val = result.candidates[0].measurements[0]["n_samples"]
    for c in result.candidates:
        first = c.measurements[0]
        assert first["kind"] == "emulator" and first["source"] == "aer:fake_manila" and first["qpu_seconds"] == 0
        # the objective is the device's billed time, whatever measured the error
        assert c.runtime_proxy >= c.runtime.shots * c.runtime.n_circuits * 250e-6 and c.runtime.shots == 4096
    confirmed = [c for c in result.candidates if c.device_error is not None]
    assert 1 <= len(confirmed) <= est.device_confirmations
    assert est.best_candidate_ in confirmed and all(c in est.pareto_front_ for c in confirmed)
    assert est.best_candidate_.device_error == min(c.device_error for c in confirmed)
    for c in confirmed:
        device = [m for m in c.measurements if m["kind"] == "device"]
        assert device[0]["source"] == "runtime-local:fake_manila" and device[0]["n_samples"] == n_val
        assert 0 < device[0]["shots"] <= 4096 and c.qpu_seconds == pytest.approx(device[0]["qpu_seconds"])
    assert result.qpu_seconds == pytest.approx(sum(c.qpu_seconds for c in confirmed))
    assert 0 < result.qpu_seconds <= plan["seconds"]
    assert result.config["device_confirmations"] == [c.architecture.key for c in confirmed]
    # the accounting survives a round trip through result.json
    again = [Candidate.from_dict(json.loads(json.dumps(c.to_dict()))) for c in result.candidates]
    assert again == result.candidates


def test_shots_are_sized_by_the_decision_margins():
    assert shots_for_margins(np.full(10, 0.1), 4096) == 400  # (2 sigma / 0.1)^2
    assert shots_for_margins(np.full(10, 0.01), 4096) == 4096  # capped at the target's shots
    assert shots_for_margins(np.full(10, 1.0), 4096) == 128  # at least MIN_SHOTS
    rng = np.random.default_rng(0)
    weight, bias, values = rng.normal(size=(3, 4)), rng.normal(size=3), rng.uniform(-1, 1, (50, 4))
    margins = decision_margins(weight, bias, values)
    for z, m in zip(values[:10], margins[:10]):  # moving m along the closest boundary's normal changes the class
        logits = weight @ z + bias
        top = logits.argmax()
        distances = [(logits[top] - logits[k]) / np.linalg.norm(weight[top] - weight[k]) for k in range(3) if k != top]
        assert m == pytest.approx(min(distances))
        k = [k for k in range(3) if k != top][int(np.argmin(distances))]
        normal = (weight[k] - weight[top]) / np.linalg.norm(weight[k] - weight[top])
        assert (weight @ (z + 1.001 * m * normal) + bias).argmax() != top
        assert (weight @ (z + 0.999 * m * normal) + bias).argmax() == top


def test_a_search_stopped_at_its_budget_resumes_to_the_larger_budget_s_result(tmp_path):
    settings = dict(TINY, search_space=SearchSpace(qubits=(2, 2), layers=(1, 2)), n_generations=3,
                    population_size=3, fidelity="target", shots=256, validation_size=0.1, reevaluations=1)
    full = QNASEstimator(backend=FakeManilaV2(), checkpoint_dir=str(tmp_path / "full"), **settings).fit(
        X_TRAIN, Y_TRAIN)
    history = full.result_.history
    assert len(history) == 3 and history[2]["n_new"] > 0
    first_two = [c for c in full.result_.candidates if c.generation <= 2]
    budget = sum(c.runtime.seconds for c in first_two) + 0.1  # two generations fit, the third does not
    run_dir = tmp_path / "stopped"
    stopped = QNASEstimator(backend=FakeManilaV2(), checkpoint_dir=str(run_dir), max_qpu_seconds=budget,
                            **settings).fit(X_TRAIN, Y_TRAIN)
    assert len(stopped.result_.history) == 2 and "generation 3" in stopped.result_.config["stopped"]
    assert stopped.result_.qpu_seconds <= budget
    assert [c.architecture for c in stopped.result_.candidates] == [c.architecture for c in first_two]
    resumed = QNASEstimator(backend=FakeManilaV2(), checkpoint_dir=str(run_dir), max_qpu_seconds=10 * budget,
                            **settings).fit(X_TRAIN, Y_TRAIN)
    assert resumed.result_.history == history and resumed.result_.config["stopped"] is None
    assert [(c.architecture, c.val_error, c.qpu_seconds) for c in resumed.result_.candidates] == \
        [(c.architecture, c.val_error, c.qpu_seconds) for c in full.result_.candidates]
    assert resumed.best_architecture_ == full.best_architecture_
    assert resumed.result_.qpu_seconds == pytest.approx(full.result_.qpu_seconds)


# --- scoring on any backend -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def exact_fit():
    return QNASEstimator(max_qpu_seconds=1000, **TINY).fit(X_TRAIN, Y_TRAIN)


def test_on_target_a_backend_equals_building_that_target_by_hand(exact_fit):
    est = exact_fit
    seed = est.result_.config["seed"]
    for backend in (FakeManilaV2(), AerSimulator.from_backend(FakeManilaV2())):
        with resolve_target(backend, seed=seed) as target:
            by_hand = est.classes_[target_logits(est.model_, target, est._scale(X_TEST)).argmax(1)]
        np.testing.assert_array_equal(est.predict(X_TEST, on_target=backend), by_hand)
        assert est.score(X_TEST, Y_TEST, on_target=backend) == float(np.mean(by_hand == Y_TEST))
    # the Runtime scoring was billed and accounted; Aer was not
    n_jobs = math.ceil(len(X_TEST) / 1000)
    once = resolve_target(FakeManilaV2()).runtime_estimate(est.best_architecture_, len(X_TEST), n_jobs=n_jobs)
    assert est.scoring_qpu_seconds_ == pytest.approx(2 * once.seconds)
    with pytest.raises(ValueError, match="on_target"):
        est.predict(X_TEST, on_target="fake_manila")


def test_scoring_on_a_device_keeps_to_what_is_left_of_the_budget(exact_fit):
    est = exact_fit
    left = est.max_qpu_seconds - est.scoring_qpu_seconds_
    shots = int(left / (len(X_TEST) * 250e-6)) + 1000  # more shots than what is left can pay for
    with pytest.raises(QPUBudgetError, match="predicting 45 samples on runtime-local:fake_manila"):
        est.predict(X_TEST, on_target=resolve_target(FakeManilaV2(), shots=shots))
