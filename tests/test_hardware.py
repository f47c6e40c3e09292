"""Searches on hardware targets: Aer noise, Runtime local testing mode, failing primitives, cut predictions."""

import numpy as np
import pytest
import torch
from qiskit.primitives import StatevectorEstimator
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime.fake_provider import FakeManilaV2
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from qiskit_qnas import Architecture, QNASEstimator, SearchSpace
from qiskit_qnas.objectives import EvaluationContext, evaluate_candidate
from qiskit_qnas.supercircuit import SuperCircuit
from qiskit_qnas.targets import resolve_target

X, Y = load_iris(return_X_y=True)
X = (X - X.mean(0)) / X.std(0)
X_TRAIN, X_TEST, Y_TRAIN, Y_TEST = train_test_split(X, Y, test_size=0.3, stratify=Y, random_state=0)
TINY = dict(search_space=SearchSpace(qubits=(2, 3), layers=(1, 2)), qubit_budget=2, population_size=4,
            n_generations=1, supercircuit_epochs=10, finetune_epochs=1, verbose=0, random_state=0)


@pytest.fixture(scope="module")
def noisy_manila():
    return AerSimulator.from_backend(FakeManilaV2())


def test_noise_changes_the_validation_measurement(noisy_manila):
    space = SearchSpace(qubits=(3, 3), layers=(2, 2))
    supercircuit = SuperCircuit(space, 4, 3, seed=0)
    common = dict(supercircuit=supercircuit, X_train=X_TRAIN, y_train=Y_TRAIN, X_val=X_TEST, y_val=Y_TEST,
                  qubit_budget=2, finetune_epochs=0)
    archs = [Architecture(3, 2, e, "rxry", ("all", "chain")) for e in ("angle_x", "angle_y", "angle_z", "zz")]
    exact = [evaluate_candidate(a, EvaluationContext(target=resolve_target(None), **common)) for a in archs]
    noisy = [evaluate_candidate(a, EvaluationContext(target=resolve_target(noisy_manila), **common)) for a in archs]
    for e, n in zip(exact, noisy):
        assert not n.failed and e.weights == n.weights  # the same architecture with the same weights
        assert n.runtime.backend_name == "fake_manila" and n.runtime_proxy != e.runtime_proxy
    assert any(e.val_error != n.val_error for e, n in zip(exact, noisy))


def test_search_on_aer_with_a_backend_noise_model(noisy_manila):
    est = QNASEstimator(backend=noisy_manila, **TINY).fit(X_TRAIN, Y_TRAIN)
    assert est.target_.name.startswith("aer")
    assert all(not c.failed and c.runtime.backend_name == "fake_manila" for c in est.result_.candidates)
    assert est.score(X_TEST, Y_TEST) > 0.6
    isa = est.best_circuit(isa=True)
    target = FakeManilaV2().target
    for instruction in isa.data:
        qargs = tuple(isa.find_bit(q).index for q in instruction.qubits)
        assert target.instruction_supported(instruction.operation.name, qargs)


def test_search_in_runtime_local_testing_mode():
    est = QNASEstimator(backend=FakeManilaV2(), target_mode="runtime", shots=256, fidelity="target",
                        **{**TINY, "population_size": 3}).fit(X_TRAIN, Y_TRAIN)
    assert est.target_.name.startswith("runtime")
    assert all(not c.failed and c.measured_seconds > 0 for c in est.result_.candidates)
    assert all(c.measurements[0]["kind"] == "device" and c.qpu_seconds > 0 for c in est.result_.candidates)
    assert len(est.pareto_front_) >= 1


def test_a_space_wider_than_the_backend_is_refused_before_work():
    est = QNASEstimator(**{**TINY, "search_space": SearchSpace(qubits=(2, 8), layers=(1, 1))}, backend=FakeManilaV2())
    with pytest.raises(ValueError, match="8 qubits.*5 qubits"):
        est.fit(X_TRAIN, Y_TRAIN)
    assert not hasattr(est, "result_")


class FailsOnThreeQubits(StatevectorEstimator):
    """A real primitive that always fails for 3-qubit circuits (e.g. a backend rejecting them)."""

    def run(self, pubs, *, precision=None):
        pubs = list(pubs)
        if any(p[0].num_qubits == 3 for p in pubs):
            raise ConnectionError("backend refused the job")
        return super().run(pubs, precision=precision)


def test_failed_candidates_are_recorded_and_the_search_goes_on():
    target = resolve_target(None, estimator=FailsOnThreeQubits(), max_retries=1, retry_backoff=0)
    est = QNASEstimator(backend=target, **{**TINY, "population_size": 8, "n_generations": 2}).fit(X_TRAIN, Y_TRAIN)
    candidates = est.result_.candidates
    failed = [c for c in candidates if c.failed]
    assert failed and all(c.architecture.n_qubits == 3 for c in failed)
    assert all("backend refused" in c.error and c.attempts == 2 for c in failed)
    assert all(c.objectives[0] == 1.0 for c in failed)
    assert all(not c.failed for c in candidates if c.architecture.n_qubits == 2)
    assert est.best_architecture_.n_qubits == 2 and all(c not in failed for c in est.pareto_front_)


def test_cut_predictions_equal_uncut_ones():
    # few cuts, so that the QPD weights are exact (amplitude trees need many: their QPD is sampled)
    space = SearchSpace(qubits=(3, 3), layers=(1, 1), embeddings=("angle_y", "zz"), entanglers=("full",))
    est = QNASEstimator(**{**TINY, "search_space": space}).fit(X_TRAIN, Y_TRAIN)
    assert est.best_candidate_.n_subcircuits > 1  # 3 qubits at budget 2: it has to be cut
    np.testing.assert_allclose(est.predict_proba(X_TEST[:10], cut=True, shots=None), est.predict_proba(X_TEST[:10]),
                               atol=1e-5)


# --- inference on the search's target ----------------------------------------------------------------
def _independent_values(est, X, readout: bool):
    """``<Z_i>`` of the chosen model on X through qiskit_aer's EstimatorV2 (exact noisy expectation
    values, FakeManilaV2's noise model) on the target's own ISA circuit, plus that noise model's
    readout errors at the physical qubits the logical ones end on."""
    from qiskit_aer.noise import NoiseModel
    from qiskit_aer.primitives import EstimatorV2 as AerEstimator

    from qiskit_qnas.targets import parameter_values

    model, arch = est.model_, est.best_architecture_
    with torch.no_grad():
        inputs = model.circuit_inputs(torch.as_tensor(est._scale(X))).to(torch.float64).numpy()
    weights = model.quantum.weight.detach().to(torch.float64).numpy()
    isa, observables = est.target_.run_isa(arch)
    estimator = AerEstimator.from_backend(AerSimulator.from_backend(FakeManilaV2()),
                                          options={"default_precision": 0.0})
    result = estimator.run([(isa, [[o] for o in observables], parameter_values(isa, inputs, weights))]).result()
    values = np.asarray(result[0].data.evs).reshape(arch.n_qubits, len(X)).T
    if readout:
        errors = NoiseModel.from_backend(FakeManilaV2())._local_readout_errors
        physical = isa.layout.final_index_layout()[: arch.n_qubits]
        p = np.array([errors[(q,)].probabilities for q in physical])  # rows: prepared 0, 1
        e0, e1 = p[:, 0, 1], p[:, 1, 0]
        values = (e1 - e0) + (1 - e0 - e1) * values
    return values


def _logits_of(est, values):
    with torch.no_grad():
        return est.model_.head(torch.as_tensor(values, dtype=torch.float32)).numpy()


def _logit_tolerance(est, z_tolerance):
    """|d logit_c| <= sum_i |W_ci| |d z_i| for the linear head."""
    return np.abs(est.model_.head.weight.detach().numpy()).sum(1) * z_tolerance


def _assert_the_score_follows_the_target(est):
    """On inputs where the noisy target and the exact engine predict differently, ``score`` follows the
    target. Whether 45 test samples hold such an input depends on the trained weights (which differ
    between hosts), so the inputs are 600 seeded points of the standardised feature space."""
    X_probe = np.random.default_rng(0).normal(size=(600, X.shape[1]))
    noisy, exact = est.predict(X_probe, on_target=True), est.predict(X_probe)
    assert (noisy != exact).any()  # the noise changes some predictions
    assert est.score(X_probe, noisy, on_target=True) == 1.0
    assert est.score(X_probe, noisy) == float((exact == noisy).mean()) < 1.0


def test_score_on_an_aer_fake_manila_target_is_the_noisy_accuracy():
    est = QNASEstimator(backend=FakeManilaV2(), target_mode="aer", **TINY).fit(X_TRAIN, Y_TRAIN)
    assert est.target_.name == "aer:fake_manila"
    on_target = est.predict_proba(X_TEST, on_target=True)
    independent = torch.softmax(torch.as_tensor(_logits_of(est, _independent_values(est, X_TEST, True))), 1).numpy()
    np.testing.assert_allclose(on_target, independent, atol=1e-5)
    noisy_accuracy = float((est.classes_[independent.argmax(1)] == Y_TEST).mean())
    assert est.score(X_TEST, Y_TEST, on_target=True) == noisy_accuracy
    # the same weights on the exact engine give other probabilities: the noise is really there
    assert np.abs(on_target - est.predict_proba(X_TEST)).max() > 1e-3
    _assert_the_score_follows_the_target(est)
    np.testing.assert_array_equal(est.predict(X_TEST, on_target=True), est.classes_[on_target.argmax(1)])


def test_score_in_runtime_local_testing_mode_is_the_noisy_accuracy():
    shots = 4096
    est = QNASEstimator(backend=FakeManilaV2(), target_mode="runtime", shots=shots,
                        **{**TINY, "population_size": 3}).fit(X_TRAIN, Y_TRAIN)
    assert est.target_.name == "runtime-local:fake_manila" and est.target_.shots == shots
    logits = np.log(est.predict_proba(X_TEST, on_target=True))
    logits -= logits.mean(1, keepdims=True)
    independent = _logits_of(est, _independent_values(est, X_TEST, True))
    independent -= independent.mean(1, keepdims=True)
    # shot noise: each <Z_i> within 5 standard errors (<= 5 / sqrt(shots)); centred logits move twice that
    bound = 2 * _logit_tolerance(est, 5 / np.sqrt(shots)).max()
    assert np.abs(logits - independent).max() <= bound
    exact = np.log(est.predict_proba(X_TEST))
    exact -= exact.mean(1, keepdims=True)
    assert np.abs(logits - exact).max() > 1e-3
    accuracy = est.score(X_TEST, Y_TEST, on_target=True)
    assert accuracy == float((est.predict(X_TEST, on_target=True) == Y_TEST).mean())  # seeded: reproducible
    assert accuracy == float((est.classes_[logits.argmax(1)] == Y_TEST).mean())
    _assert_the_score_follows_the_target(est)


def test_on_target_with_the_exact_target_equals_plain_prediction():
    est = QNASEstimator(**TINY).fit(X_TRAIN, Y_TRAIN)
    assert est.target_.exact
    np.testing.assert_allclose(est.predict_proba(X_TEST, on_target=True), est.predict_proba(X_TEST), atol=1e-5)
    np.testing.assert_array_equal(est.predict(X_TEST, on_target=True), est.predict(X_TEST))
    assert est.score(X_TEST, Y_TEST, on_target=True) == est.score(X_TEST, Y_TEST)
    with pytest.raises(ValueError, match="cut=True with on_target=True"):
        est.predict(X_TEST, cut=True, on_target=True)
    with pytest.raises(ValueError, match="without cut=True"):
        est.predict(X_TEST, shots=100)


def test_search_in_runtime_local_testing_mode_with_mitigation_and_twirling(tmp_path):
    options = {"resilience_level": 1, "twirling": {"enable_gates": True, "enable_measure": True,
                                                   "num_randomizations": 4}}
    settings = dict(search_space=SearchSpace(qubits=(2, 2), layers=(1, 1)), qubit_budget=2, population_size=2,
                    n_generations=1, supercircuit_epochs=2, finetune_epochs=0, final_epochs=0,
                    validation_size=0.1, verbose=0, random_state=0)
    est = QNASEstimator(backend=FakeManilaV2(), target_mode="runtime", shots=256, runtime_options=options,
                        fidelity="target", checkpoint_dir=str(tmp_path), **settings).fit(X_TRAIN, Y_TRAIN)
    assert est.target_.primitive().options.resilience_level == 1
    assert all(not c.failed for c in est.result_.candidates)
    for c in est.result_.candidates:  # TREX calibration and 4 randomizations of 64 shots counted in the proxy
        assert c.runtime.executions_per_circuit == 256 and c.runtime.calibration_executions == 4 * 64
    assert est.result_.config["runtime_options"] == options
    # other options: the checkpoint of this run is not reused
    again = QNASEstimator(backend=FakeManilaV2(), target_mode="runtime", shots=256, runtime_options={},
                          **settings)
    assert again._fingerprint(est._space(), est.target_, X_TRAIN, Y_TRAIN, 0) != \
        est._fingerprint(est._space(), est.target_, X_TRAIN, Y_TRAIN, 0)
    with pytest.raises(ValueError, match="runtime_options=.*non-Runtime target"):
        QNASEstimator(backend=FakeManilaV2(), target_mode="aer", runtime_options=options, **settings).fit(
            X_TRAIN, Y_TRAIN)
