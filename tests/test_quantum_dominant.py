"""Quantum-dominant models: no trainable layer before the circuit (``hidden=None``), no trainable head
(``head=None``) and QuantumNAT's post-measurement normalisation (``output_norm``), cross-checked against
Qiskit's ``Statevector`` and scikit-learn's ``PCA``."""

import numpy as np
import pytest
import torch
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime.fake_provider import FakeManilaV2
from sklearn.datasets import load_digits, load_iris
from sklearn.decomposition import PCA
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from qiskit_qnas import QNASEstimator, SearchSpace
from qiskit_qnas.model import FixedInputMap, ReadoutNorm, predict_logits, train_model
from qiskit_qnas.space import Architecture
from qiskit_qnas.supercircuit import SuperCircuit, finetune, train_supercircuit
from qiskit_qnas.targets import resolve_target
from qiskit_qnas.validation import InvalidArgument


def digits4(n: int = 240, features: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Digits 0-3 of scikit-learn's 8x8 digits, pixels in [0, 1]."""
    X, y = load_digits(return_X_y=True)
    keep = np.flatnonzero(y < 4)[:n]
    return X[keep][:, features] / 16.0, y[keep]


def standardised(X: np.ndarray) -> np.ndarray:
    scale = X.std(0)
    return (X - X.mean(0)) / np.where(scale < 1e-12, 1.0, scale)


def z_expectations(arch: Architecture, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``<Z_i>`` of every qubit of ``arch``'s circuit with these parameters, by Qiskit's ``Statevector``."""
    bound = arch.circuit().assign_parameters(dict(zip(arch.input_params, inputs)) | dict(zip(arch.weight_params,
                                                                                            weights)))
    state = Statevector(bound)
    n = arch.n_qubits
    return np.array([state.expectation_value(SparsePauliOp("I" * (n - 1 - i) + "Z" + "I" * i)).real
                     for i in range(n)])


# --- the fixed input map -------------------------------------------------------------------------
def test_the_fixed_map_is_one_to_one_when_the_circuit_has_room_and_whitened_pca_otherwise():
    X, _ = digits4()
    d = X.shape[1]
    x = torch.as_tensor(X, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="not fitted"):
        FixedInputMap(d, 4)(x)

    wide = FixedInputMap(d, d + 8).fit(X)
    out = wide(x).numpy()
    np.testing.assert_allclose(out[:, :d], MinMaxScaler().fit_transform(X), atol=1e-5)  # feature k on input k
    assert np.all(out[:, d:] == 0)
    # what the estimator's standardisation does before the map changes nothing
    z = StandardScaler().fit_transform(X)
    np.testing.assert_allclose(FixedInputMap(d, d + 8).fit(z)(torch.as_tensor(z)).numpy(), out, atol=1e-5)

    narrow = FixedInputMap(d, 6).fit(X)
    ours = narrow(x).numpy()
    reference = PCA(6, whiten=True, svd_solver="full").fit_transform(standardised(X))
    signs = np.sign((ours * reference).sum(0))
    np.testing.assert_allclose(ours, reference * signs, atol=1e-4)
    # nested: a map fitted for more inputs gives a narrower candidate the same first components
    np.testing.assert_allclose(FixedInputMap(d, 10).fit(X)(x, 6).numpy(), ours, atol=1e-6)
    assert list(narrow.parameters()) == []  # nothing to train


@pytest.mark.parametrize("embedding", ["angle_y", "amplitude", "zz", "dense"])
def test_a_model_without_trainable_layers_around_the_circuit_equals_statevector(embedding):
    X, y = digits4(features=slice(16, 32))  # 16 features: one amplitude each on 4 qubits, or 4 components
    arch = Architecture(4, 2, embedding=embedding, rotation="rxry", entangler="chain")
    model = arch.model(16, 4, hidden=None, head=None, seed=3)
    assert [name for name, _ in model.named_parameters()] == ["quantum.weight"]
    train_model(model, X, y, epochs=1)  # fits the map on the training data, trains the circuit alone
    logits = predict_logits(model, X[:4])
    with torch.no_grad():
        inputs = model.circuit_inputs(torch.as_tensor(X[:4], dtype=torch.float32)).double().numpy()
    weights = model.quantum.weight.detach().double().numpy()
    for row, sample in zip(logits, inputs):
        np.testing.assert_allclose(row, z_expectations(arch, sample, weights), atol=2e-6)
    if embedding == "amplitude":  # pixel k is amplitude k: the embedding prepares the scaled pixels, normalised
        embedding_only = Architecture(4, 1, embedding="amplitude", rotation="ry", entangler="none")
        embedded = Statevector(embedding_only.circuit().assign_parameters(
            dict(zip(embedding_only.input_params, inputs[0])) | dict(zip(embedding_only.weight_params, [0.0] * 4))))
        scaled = MinMaxScaler().fit_transform(X)[0]
        expected = scaled / np.linalg.norm(scaled)
        np.testing.assert_allclose(embedded.data.real, expected, atol=1e-5)


def test_head_none_needs_a_qubit_per_class_and_is_refused_before_any_work(tmp_path):
    with pytest.raises(InvalidArgument, match="head"):
        Architecture(2, 1).model(4, 3, head=None)
    X, y = load_iris(return_X_y=True)
    run_dir = tmp_path / "run"
    with pytest.raises(InvalidArgument, match="at least 3 qubits"):
        QNASEstimator(SearchSpace(qubits=(2, 4)), head=None, checkpoint_dir=run_dir, verbose=0).fit(X, y)
    assert not run_dir.exists()
    for setting in ({"head": "softmax"}, {"hidden": "none"}, {"output_norm": "yes"}, {"hidden": 0}):
        with pytest.raises(InvalidArgument, match=next(iter(setting))):
            QNASEstimator(checkpoint_dir=run_dir, verbose=0, **setting).fit(X, y)
        assert not run_dir.exists()


# --- QuantumNAT's normalisation ------------------------------------------------------------------
def test_readout_norm_takes_batch_statistics_in_training_and_running_ones_at_inference():
    X, y = load_iris(return_X_y=True)
    X = standardised(X)
    model = Architecture(3, 2).model(4, 3, hidden=None, output_norm=True, seed=0)
    train_model(model, X, y, epochs=2)
    norm = model.readout_norm
    assert isinstance(norm, ReadoutNorm) and int(norm.num_batches_tracked) > 0 and norm.weight is None
    x = torch.as_tensor(X, dtype=torch.float32)
    with torch.no_grad():
        z = model.quantum(model.circuit_inputs(x)).float()
        expected = model.head((z - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps))
        np.testing.assert_allclose(predict_logits(model, X), expected.numpy(), atol=1e-5)
        weight, bias = model.readout_affine()
        np.testing.assert_allclose(z.double().numpy() @ weight.T + bias, expected.numpy(), atol=1e-5)
        model.train()
        batch = norm(z)
        model.eval()
    np.testing.assert_allclose(batch.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(batch.var(0, unbiased=False).numpy(), 1, atol=1e-3)
    assert not torch.allclose(norm.running_mean, torch.zeros(3))


def test_supercircuit_members_extract_to_the_same_quantum_dominant_model():
    X, y = digits4(features=slice(16, 32))
    space = SearchSpace(qubits=(4, 5), layers=(1, 2))
    supercircuit = SuperCircuit(space, 16, 4, hidden=None, head=None, output_norm=True, seed=0)
    train_supercircuit(supercircuit, X, y, epochs=1)
    supercircuit.eval()
    x = torch.as_tensor(X[:20], dtype=torch.float32)
    for embedding in space.embeddings:
        for n in (4, 5):
            arch = Architecture(n, 2, embedding=embedding)
            model = finetune(supercircuit, arch, X, y, epochs=0)
            with torch.no_grad():
                np.testing.assert_allclose(predict_logits(model, X[:20]), supercircuit(x, arch).numpy(), atol=1e-5)
    assert not any(name.startswith(("trunk", "heads")) for name, _ in supercircuit.named_parameters())


# --- the estimator -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quantum_dominant():
    """A small search on Iris with hidden=None, head=None and output_norm: (estimator, X_test, y_test)."""
    X, y = load_iris(return_X_y=True)
    # chain entanglers on 4 qubits and pieces of 3: at most one CX cut per layer, exact QPD weights
    space = SearchSpace(qubits=(4, 4), layers=(1, 2), entanglers=("chain",))
    estimator = QNASEstimator(space, qubit_budget=3, hidden=None, head=None,
                              output_norm=True, population_size=4, n_generations=2, supercircuit_epochs=4,
                              finetune_epochs=1, random_state=0, verbose=0).fit(X[::2], y[::2])
    return estimator, X[1::2], y[1::2]


def test_the_estimator_scores_cuts_and_runs_a_quantum_dominant_model_on_a_target(quantum_dominant):
    estimator, X, y = quantum_dominant
    model = estimator.model_
    assert isinstance(model.pre, FixedInputMap) and isinstance(model.readout_norm, ReadoutNorm)
    assert [name for name, _ in model.named_parameters()] == ["quantum.weight"]
    exact = estimator.predict_proba(X)
    # a noiseless Aer target gives the exact read-outs: equal probabilities only if the normalisation
    # (running statistics) is applied to the target's read-outs too
    np.testing.assert_allclose(estimator.predict_proba(X, on_target=AerSimulator()), exact, atol=1e-5)
    assert estimator.best_architecture_.cutting_cost(3).n_gate_cuts >= 1
    cut = estimator.predict_proba(X[:4], cut=True, shots=None)  # the pieces simulated exactly
    np.testing.assert_allclose(cut, exact[:4], atol=1e-5)
    noisy = estimator.score(X, y, on_target=FakeManilaV2())
    assert 0 <= noisy <= 1


def test_the_fingerprint_of_earlier_runs_stays_when_the_new_settings_keep_their_defaults():
    X, y = load_iris(return_X_y=True)
    space, target = SearchSpace(), resolve_target(None)
    fingerprint = QNASEstimator()._fingerprint(space, target, X, y, 0)
    assert QNASEstimator(head="linear", output_norm=False)._fingerprint(space, target, X, y, 0) == fingerprint
    assert QNASEstimator(output_norm=True)._fingerprint(space, target, X, y, 0) != fingerprint
    assert QNASEstimator(output_norm=False)._fingerprint(space, target, X, y, 0) == fingerprint
    assert QNASEstimator(hidden=None)._fingerprint(space, target, X, y, 0) != fingerprint


def test_noise_aware_training_normalises_the_read_outs_by_default_with_noisy_statistics():
    X, y = load_iris(return_X_y=True)
    space = SearchSpace(qubits=(3, 3), layers=(1, 1), embeddings=("angle_y",), rotations=("ry",),
                        entanglers=("chain",))
    settings = dict(hidden=None, backend=FakeManilaV2(), target_mode="aer", noise_aware=True, population_size=2,
                    n_generations=1, supercircuit_epochs=2, finetune_epochs=1, reevaluations=0, random_state=0,
                    verbose=0)
    estimator = QNASEstimator(space, **settings).fit(X, y)
    norm = estimator.model_.readout_norm
    assert isinstance(norm, ReadoutNorm) and int(norm.num_batches_tracked) > 0
    # its statistics are those of the read-outs under the noise it trained on: FakeManila's errors pull every
    # <Z> towards 0, so the running deviations are below the exact read-outs' on the same data
    model = estimator.model_
    with torch.no_grad():
        exact = model.quantum(model.circuit_inputs(torch.as_tensor(estimator._scale(X), dtype=torch.float32)))
    assert torch.all(norm.running_var.sqrt() < exact.std(0))
    assert 0 <= estimator.score(X, y, on_target=True) <= 1
    assert not isinstance(QNASEstimator(space, **{**settings, "output_norm": False}).fit(X, y).model_.readout_norm,
                          ReadoutNorm)


def test_the_dense_embedding_puts_feature_k_n_plus_i_on_qubit_i_through_ry_rz_rx_ry():
    from qiskit import QuantumCircuit

    n = 3
    arch = Architecture(n, 1, embedding="dense", rotation="ry", entangler="none")
    assert arch.n_features == arch.n_inputs == 4 * n
    x = np.random.default_rng(0).uniform(-np.pi, np.pi, 4 * n)
    reference = QuantumCircuit(n)
    for k, gate in enumerate(("ry", "rz", "rx", "ry")):
        for i in range(n):
            getattr(reference, gate)(x[k * n + i], i)
    bound = arch.circuit().assign_parameters(dict(zip(arch.input_params, x)) | dict(zip(arch.weight_params,
                                                                                        [0.0] * n)))
    assert Statevector(bound).equiv(Statevector(reference))
    assert "dense" not in SearchSpace().embeddings and "dense" in SearchSpace(embeddings=("dense",)).embeddings
