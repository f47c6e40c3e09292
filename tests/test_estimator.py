"""QNASEstimator end to end on the exact target: the Iris bar, the scikit-learn API, bad input."""

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from qiskit_qnas import Architecture, QNASEstimator, SearchResult, SearchSpace
from qiskit_qnas.cutting import CuttingCost, cutting_cost
from qiskit_qnas.result import Candidate, dominates
from qiskit_qnas.selection import select, selection_key
from qiskit_qnas.targets import RuntimeEstimate

X, Y = load_iris(return_X_y=True)
X_TRAIN, X_TEST, Y_TRAIN, Y_TEST = train_test_split(X, Y, test_size=0.3, stratify=Y, random_state=0)
SMALL = dict(search_space=SearchSpace(qubits=(2, 3), layers=(1, 2)), qubit_budget=2, population_size=6,
             n_generations=2, supercircuit_epochs=8, finetune_epochs=2, verbose=0)


@pytest.fixture(scope="module")
def iris_search():
    """The issue's bar: default settings, Iris, seed 0."""
    est = QNASEstimator(search_space=SearchSpace(qubits=(2, 4), layers=(1, 2)), qubit_budget=2, random_state=0,
                        verbose=0)
    return est.fit(X_TRAIN, Y_TRAIN)


def test_iris_default_search_scores_at_least_095(iris_search):
    assert iris_search.score(X_TEST, Y_TEST) >= 0.95
    assert iris_search.best_architecture_ in iris_search.search_space
    assert iris_search.predict(X_TEST).shape == (len(X_TEST),)
    proba = iris_search.predict_proba(X_TEST)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    assert set(iris_search.classes_) == {0, 1, 2}


def test_front_is_non_dominated_and_holds_more_than_one(iris_search):
    front = iris_search.pareto_front_
    assert len(front) > 1
    everyone = [c for c in iris_search.result_.candidates if not c.failed]
    for member in front:
        assert len(member.objectives) == 3
        assert member.objectives == (member.val_error, member.runtime_proxy, member.n_subcircuits)
        assert not any(dominates(other.objectives, member.objectives) for other in everyone)
    assert iris_search.best_candidate_ in front


def test_candidates_carry_consistent_objectives(iris_search):
    for c in iris_search.result_.candidates[:8]:
        assert 0 <= c.val_error <= 1 and math.isclose(c.val_error, 1 - c.val_accuracy)
        assert c.runtime_proxy > 0
        direct = cutting_cost(c.architecture, qubit_budget=2)
        assert c.n_subcircuits == direct.n_subcircuits == c.cutting.n_subcircuits <= c.cutting.n_pieces
        assert (c.n_subcircuits == 1) == (c.architecture.n_qubits <= 2)
        assert len(c.weights) == c.architecture.n_weights


def test_progress_timings_and_history(iris_search):
    timings = iris_search.timings_
    for key in ("supercircuit_training", "search", "candidate_evaluation", "cut_finding", "reevaluation",
                "final_training"):
        assert timings[key] >= 0
    assert len(iris_search.result_.history) == iris_search.n_generations


def test_result_round_trip_and_plot(iris_search, tmp_path):
    result = iris_search.result_
    result.save(tmp_path)
    loaded = SearchResult.load(tmp_path)
    assert [c.to_dict() for c in loaded.candidates] == [c.to_dict() for c in result.candidates]
    for again, original in zip(loaded.candidates, result.candidates):  # typed after the JSON round trip
        assert isinstance(again.runtime, RuntimeEstimate) and again.runtime == original.runtime
        assert isinstance(again.cutting, CuttingCost) and again.cutting == original.cutting
    assert loaded.pareto_mask.tolist() == result.pareto_mask.tolist()
    assert loaded.best.architecture == iris_search.best_architecture_
    frame = result.to_dataframe()
    assert len(frame) == len(result) and frame["pareto"].sum() == len(result.pareto_front)
    fig = result.plot_pareto(tmp_path / "pareto.png")
    assert len(fig.axes) == 3 and (tmp_path / "pareto.png").stat().st_size > 0
    assert "val_error" in result.format_table()


def test_results_written_before_the_ingredients_were_typed_still_load(iris_search):
    data = iris_search.result_.candidates[0].to_dict()
    data.update(runtime={}, cutting={})  # what such files hold for a candidate without them
    again = Candidate.from_dict(data)
    assert again.runtime is None and again.cutting is None
    assert again.architecture == iris_search.result_.candidates[0].architecture
    assert "subcircuits" in again.summary()


def test_saved_run_holds_model_and_circuit(iris_search, tmp_path):
    from qiskit import qpy

    iris_search.save(tmp_path)
    for name in ("result.json", "candidates.csv", "pareto.png", "model.pt", "best_circuit.qpy"):
        assert (tmp_path / name).stat().st_size > 0
    with open(tmp_path / "best_circuit.qpy", "rb") as f:
        qc = qpy.load(f)[0]
    arch = iris_search.best_architecture_
    assert qc.num_qubits == arch.n_qubits
    assert {p.name for p in qc.parameters} == {p.name for p in arch.input_params}


def test_same_seed_same_front():
    fronts = []
    for _ in range(2):
        est = QNASEstimator(random_state=11, **SMALL).fit(X_TRAIN, Y_TRAIN)
        fronts.append([(c.architecture.key, c.objectives) for c in est.pareto_front_])
    assert fronts[0] == fronts[1]


def test_sklearn_clone_pipeline_and_cross_validation():
    est = QNASEstimator(random_state=1, **SMALL)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    copy.set_params(population_size=4)
    assert copy.population_size == 4 and est.population_size == 6
    pipeline = make_pipeline(StandardScaler(), QNASEstimator(random_state=1, **SMALL))
    pipeline.fit(X_TRAIN, Y_TRAIN)
    assert pipeline.score(X_TEST, Y_TEST) > 0.6
    scores = cross_val_score(QNASEstimator(random_state=2, **{**SMALL, "n_generations": 1}), X, Y, cv=2)
    assert scores.shape == (2,) and np.all(scores > 0.5)


def test_string_labels_and_selection_rules():
    labels = np.array(["setosa", "versicolor", "virginica"])[Y_TRAIN]
    est = QNASEstimator(random_state=0, selection="min_runtime", **SMALL).fit(X_TRAIN, labels)
    assert set(est.predict(X_TEST)) <= set(labels)
    front = est.pareto_front_
    assert est.best_candidate_.runtime_proxy == min(c.runtime_proxy for c in front)
    picked = QNASEstimator(random_state=0, selection=lambda f: f[-1], **SMALL).fit(X_TRAIN, labels)
    assert picked.best_candidate_ is picked.pareto_front_[-1]


def test_equal_objectives_are_decided_by_the_validation_loss(iris_search):
    """Many candidates reach 0 validation errors on a small split; among equal objectives the model
    with the lower validation cross-entropy is chosen (then the architecture)."""
    import dataclasses

    assert all(math.isfinite(c.val_loss) and c.val_loss > 0 for c in iris_search.result_.candidates)
    base = iris_search.best_candidate_
    tied = [dataclasses.replace(base, architecture=Architecture(2, 1), val_loss=base.val_loss + 0.5),
            dataclasses.replace(base, architecture=Architecture(4, 2), val_loss=base.val_loss + 0.1),
            dataclasses.replace(base, architecture=Architecture(2, 2), val_loss=math.nan)]
    assert select(tied, "min_error") is tied[1]
    assert select([tied[0], tied[2]], "min_error") is tied[0]  # a known loss beats an unknown one


def test_the_chosen_candidate_was_re_evaluated_and_leads_the_pooled_errors(iris_search):
    """Default ``reevaluations=3``: the chosen one was measured twice, its error the mean of both, and
    no successful candidate comes before it in min_error's order; at most 3 were re-evaluated."""
    chosen = iris_search.best_candidate_
    assert len(chosen.val_errors) == 2 and chosen.val_error == pytest.approx(np.mean(chosen.val_errors))
    assert chosen.objectives[0] == chosen.val_error and chosen in iris_search.pareto_front_
    done = [c for c in iris_search.result_.candidates if not c.failed]
    assert min(done, key=selection_key("min_error")) is chosen
    assert 1 <= sum(bool(c.val_errors) for c in done) <= 3
    assert "(mean of 2)" in chosen.summary()


def test_reevaluations_zero_keeps_every_search_time_measurement():
    est = QNASEstimator(random_state=0, reevaluations=0, **SMALL).fit(X_TRAIN, Y_TRAIN)
    assert not any(c.val_errors for c in est.result_.candidates)
    again = QNASEstimator(random_state=0, **SMALL).fit(X_TRAIN, Y_TRAIN)
    # the same search (the setting acts after it): the same candidates, some of them re-measured
    assert [c.architecture for c in again.result_.candidates] == [c.architecture for c in est.result_.candidates]
    assert any(c.val_errors for c in again.result_.candidates)


def test_validation_loss_is_the_cross_entropy_of_the_candidates_logits():
    import torch

    from qiskit_qnas.objectives import EvaluationContext, evaluate_candidate
    from qiskit_qnas.supercircuit import SuperCircuit
    from qiskit_qnas.targets import resolve_target

    arch = Architecture(3, 2, "angle_y", "rxry", "chain")
    supercircuit = SuperCircuit(SearchSpace(qubits=(2, 3), layers=(1, 2)), 4, 3, seed=0)
    context = EvaluationContext(supercircuit=supercircuit, X_train=X_TRAIN, y_train=Y_TRAIN, X_val=X_TEST,
                                y_val=Y_TEST, qubit_budget=2, finetune_epochs=0, target=resolve_target(None))
    candidate = evaluate_candidate(arch, context)
    with torch.no_grad():
        logits = supercircuit.extract(arch)(torch.as_tensor(X_TEST, dtype=torch.float32))
    expected = float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(Y_TEST)))
    assert candidate.val_loss == pytest.approx(expected, rel=1e-5)
    assert candidate.val_error == pytest.approx(1 - float((logits.argmax(1).numpy() == Y_TEST).mean()))


@pytest.mark.parametrize("X_bad, y_bad, match", [
    (np.where(np.arange(X_TRAIN.size).reshape(X_TRAIN.shape) == 5, np.nan, X_TRAIN), Y_TRAIN, "NaN"),
    (X_TRAIN, Y_TRAIN[:-1], "inconsistent numbers of samples"),
    (X_TRAIN, np.zeros_like(Y_TRAIN), "single class"),
    (X_TRAIN[:, 0], Y_TRAIN, "2D array"),
    (X_TRAIN, np.where(np.arange(len(Y_TRAIN)) == 0, 7, Y_TRAIN), "at least 2 samples"),
])
def test_bad_data_is_refused_before_work(X_bad, y_bad, match):
    with pytest.raises(ValueError, match=match):
        QNASEstimator(**SMALL).fit(X_bad, y_bad)


@pytest.mark.parametrize("kwargs, match", [
    ({"qubit_budget": 0}, "qubit_budget"),
    ({"population_size": 1}, "population_size"),
    ({"validation_size": 1.5}, "validation_size"),
    ({"selection": "best"}, "selection"),
    ({"reevaluations": -1}, "reevaluations"),
    ({"reevaluations": 1.5}, "reevaluations"),
    ({"cutting_objective": "cuts"}, "cutting_objective"),
    ({"runtime_objective": "depth"}, "runtime_objective"),
    ({"search_space": "big"}, "search_space"),
    ({"executor": object()}, "executor"),
    ({"noise_aware": "yes"}, "noise_aware"),
    ({"noise_aware": True}, "noise_aware=True with target 'statevector'"),  # exact: no noise to inject
    ({"runtime_options": {"resilience_level": 3}}, "runtime_options resilience_level"),
    ({"max_runtime": "a"}, "max_runtime"),
    ({"max_runtime": -1}, "max_runtime"),
    ({"max_runtime": float("nan")}, "max_runtime"),
    ({"cut_time_limit": float("inf")}, "cut_time_limit"),
    ({"dropout": "a"}, "dropout"),
    ({"learning_rate": True}, "learning_rate"),
    ({"batch_size": 16.0}, "batch_size"),
    ({"n_random": True}, "n_random"),
    ({"scale_inputs": "yes"}, "scale_inputs"),
    ({"target_mode": "fast"}, "target_mode"),
    ({"optimization_level": 4}, "optimization_level"),
    ({"reference_backend": object()}, "reference_backend"),
    ({"checkpoint_dir": 5}, "checkpoint_dir"),
    ({"max_memory": "4XB"}, "max_memory"),
    ({"max_memory": -1}, "max_memory"),
    ({"random_state": -1}, "random_state"),
    ({"random_state": 1.5}, "random_state"),
    ({"verbose": -1}, "verbose"),
    ({"callback": 5}, "callback"),
    ({"runtime_objective": ["proxy"]}, "runtime_objective"),
])
def test_bad_settings_are_refused_before_work(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QNASEstimator(**{**SMALL, **kwargs}).fit(X_TRAIN, Y_TRAIN)


def test_bad_spaces_are_refused():
    with pytest.raises(ValueError, match="empty search space"):
        SearchSpace(entanglers=())
    with pytest.raises(ValueError, match="embedding"):
        SearchSpace(embeddings=("angle_w",))
    with pytest.raises(ValueError, match="n_qubits"):
        Architecture(0, 1)


def test_unfitted_estimator_refuses_to_predict():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        QNASEstimator().predict(X_TEST)


def test_noise_aware_search_trains_under_the_targets_noise():
    """On FakeManilaV2's noise (Aer) the SuperCircuit and the fine-tuning train under the injected
    errors: other weights than exact training from the same seed, a different run fingerprint, and
    the validation still measured on the noisy target."""
    import warnings

    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from qiskit_qnas.noise import TrainingNoise

    space = SearchSpace(qubits=(2, 2), layers=(1, 1), embeddings=("angle_y",), rotations=("ry",),
                        entanglers=("chain",))
    settings = dict(search_space=space, qubit_budget=2, backend=FakeManilaV2(), target_mode="aer",
                    population_size=2, n_generations=1, supercircuit_epochs=2, finetune_epochs=1, final_epochs=1,
                    random_state=0, verbose=0)
    fitted = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for aware in (False, True):
            fitted[aware] = QNASEstimator(**settings, noise_aware=aware).fit(X_TRAIN, Y_TRAIN)
    assert fitted[False].supercircuit_.noise is None
    assert isinstance(fitted[True].supercircuit_.noise, TrainingNoise)
    exact_w, aware_w = (  # one weight tensor per embedding family
        torch.cat([w.detach().reshape(-1) for w in fitted[aware].supercircuit_.quantum_weights.values()])
        for aware in (False, True))
    assert exact_w.shape == aware_w.shape and not np.allclose(exact_w.numpy(), aware_w.numpy())
    assert fitted[True].result_.config["params"]["noise_aware"] is True
    assert all(c.architecture.n_qubits == 2 and 0 <= c.val_accuracy <= 1 for c in fitted[True].result_.candidates)
    target = fitted[True].target_
    fingerprints = [est._fingerprint(space, target, X_TRAIN, Y_TRAIN, 0) for est in fitted.values()]
    assert fingerprints[0] != fingerprints[1]


TINY = dict(search_space=SearchSpace(qubits=(2, 2), layers=(1, 1)), qubit_budget=2, population_size=2,
            n_generations=1, supercircuit_epochs=1, finetune_epochs=0, final_epochs=0, verbose=0)


def _hashes(directory):
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_memory_is_refused_before_any_allocation_or_directory(tmp_path):
    run_dir = tmp_path / "run"
    est = QNASEstimator(search_space=SearchSpace(qubits=(30, 30), embeddings=("angle_y",)), checkpoint_dir=run_dir,
                        verbose=0)
    with pytest.raises(ValueError, match=r"invalid qubits=\(30, 30\): the widest candidate \(30 qubits\).*"
                                         r"needs about .* bytes.*limit of .* bytes"):
        est.fit(X_TRAIN, Y_TRAIN)
    assert not run_dir.exists()
    with pytest.raises(ValueError, match="max_memory"):  # the cap alone refuses a 2-qubit search
        QNASEstimator(**{**TINY, "max_memory": "1KiB"}).fit(X_TRAIN, Y_TRAIN)


def test_values_beyond_float32_are_refused(iris_search):
    X_big = X_TEST.copy()
    X_big[3, 1] = 1e39
    for method in (iris_search.predict, iris_search.predict_proba):
        with pytest.raises(ValueError, match=r"X\[3, 1\].*overflows float32"):
            method(X_big)
    with pytest.raises(ValueError, match="overflows float32"):
        iris_search.score(X_big, Y_TEST)
    X_huge = X_TRAIN.copy()
    X_huge[0, 2] = 1e308
    with pytest.raises(ValueError, match="X column 2: its mean or standard deviation overflows"):
        QNASEstimator(**TINY).fit(X_huge, Y_TRAIN)
    X_unscaled = X_TRAIN.copy()
    X_unscaled[0, 0] = 1e39
    with pytest.raises(ValueError, match="overflows float32"):
        QNASEstimator(**{**TINY, "scale_inputs": False}).fit(X_unscaled, Y_TRAIN)


def test_a_directory_of_other_settings_is_refused_untouched(tmp_path):
    run_dir = tmp_path / "run"
    QNASEstimator(**TINY, random_state=0, checkpoint_dir=run_dir).fit(X_TRAIN, Y_TRAIN)
    before = _hashes(run_dir)
    assert {"supercircuit.pt", "result.json", "model.pt"} <= set(before)
    with pytest.raises(ValueError, match="holds another run"):
        QNASEstimator(**TINY, random_state=1, checkpoint_dir=run_dir).fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(ValueError, match="holds another run"):
        QNASEstimator(**{**TINY, "finetune_epochs": 1}, random_state=0, checkpoint_dir=run_dir).fit(X_TRAIN, Y_TRAIN)
    assert _hashes(run_dir) == before
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt: is not a file of a qnas run"):
        QNASEstimator(**TINY, random_state=0, checkpoint_dir=run_dir).fit(X_TRAIN, Y_TRAIN)


def test_random_state_none_records_its_seed_and_resumes(tmp_path):
    import json

    run_dir = tmp_path / "run"
    first = QNASEstimator(**TINY, checkpoint_dir=run_dir).fit(X_TRAIN, Y_TRAIN)
    seed = json.loads((run_dir / "seed.json").read_text())["seed"]
    assert first.result_.config["seed"] == seed
    (run_dir / "result.json").unlink()  # as if killed before the end
    second = QNASEstimator(**TINY, checkpoint_dir=run_dir).fit(X_TRAIN, Y_TRAIN)
    assert second.result_.config["seed"] == seed
    assert [c.objectives for c in second.result_.candidates] == [c.objectives for c in first.result_.candidates]
    # an explicit other seed is another run
    with pytest.raises(ValueError, match="another run"):
        QNASEstimator(**TINY, random_state=seed + 1, checkpoint_dir=run_dir).fit(X_TRAIN, Y_TRAIN)


# --- close(): the Runtime Batch the fitted target holds ---------------------------------------------
RUNTIME_TINY = dict(search_space=SearchSpace(qubits=(2, 2), layers=(1, 1), embeddings=("angle_y",), rotations=("ry",),
                                             entanglers=("none",)),
                    qubit_budget=2, population_size=2, n_generations=1, supercircuit_epochs=1, finetune_epochs=0,
                    final_epochs=1, shots=64, verbose=0, random_state=0,
                    fidelity="target")  # every candidate on the device: the search's jobs open the target's Batch


def test_close_ends_the_runtime_batch_the_fitted_target_holds():
    from qiskit_ibm_runtime import Batch
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    QNASEstimator().close()  # unfitted: nothing to close
    est = QNASEstimator(backend=FakeManilaV2(), **RUNTIME_TINY).fit(X_TRAIN, Y_TRAIN)
    batch = est.target_._mode  # the target's own Batch, opened by the search's jobs (local testing mode)
    assert isinstance(batch, Batch) and batch._active
    est.close()
    assert not batch._active and est.target_._mode is None
    est.close()  # twice is fine
    labels = est.predict(X_TEST[:3], on_target=True)  # a later on-target prediction opens a new Batch
    assert labels.shape == (3,) and est.target_._mode is not batch and est.target_._mode._active
    reopened = est.target_._mode
    with est as same:
        assert same is est
    assert not reopened._active and est.target_._mode is None
