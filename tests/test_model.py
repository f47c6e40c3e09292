"""The HQNN torch module: training on Iris through TorchConnector, and a cross-check against EstimatorQNN."""

import numpy as np
import pytest
import torch
from qiskit_machine_learning.connectors import TorchConnector
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from qiskit_qnas import Architecture
from qiskit_qnas.model import HQNN, feature_transform, predict_logits, train_model


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small models train fastest on one thread (and a 2-core machine shared with other jobs makes
    OpenMP workers wait for a busy core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def standardised_split(X, y, test_size: float):
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


@pytest.fixture(scope="module")
def iris():
    return standardised_split(*load_iris(return_X_y=True), test_size=0.3)


def test_hqnn_learns_iris(iris):
    X_train, X_test, y_train, y_test = iris
    arch = Architecture(4, 2, "angle_y", "ry", ("odd", "even"))
    model = arch.model(n_features=4, n_classes=3, seed=0)
    assert isinstance(model, HQNN) and isinstance(model.quantum, TorchConnector)
    losses = train_model(model, X_train, y_train, epochs=30, seed=0)
    assert len(losses) == 30 and losses[-1] < losses[0] / 3
    accuracy = (predict_logits(model, X_test).argmax(1) == y_test).mean()
    assert accuracy >= 0.9
    assert not model.training  # train_model leaves the model in evaluation mode


@pytest.mark.parametrize("arch", [
    Architecture(4, 2, "angle_y", "ry", ("odd", "even")),
    Architecture(3, 2, "amplitude", "rxry", ("all", "chain")),
    Architecture(3, 1, "zz", "rxryrz", "full"),
    Architecture(2, 2, "angle_z", "rxry", "all"),
], ids=lambda a: a.key)
def test_forward_equals_a_manual_computation_with_estimator_qnn(iris, arch):
    """pre-layer -> feature transform -> EstimatorQNN over StatevectorEstimator -> head."""
    model = arch.model(n_features=4, n_classes=3, seed=1).eval()
    x = torch.tensor(iris[1][:3], dtype=torch.float32)
    with torch.no_grad():
        angles = feature_transform(arch, model.norm(model.pre(x)))
        assert angles.shape == (3, arch.n_inputs)
        reference = arch.qnn(engine="estimator")
        z = reference.forward(angles.double().numpy(), model.quantum.weight.detach().double().numpy())
        expected = model.head(torch.tensor(z, dtype=torch.float32))
        assert torch.allclose(model(x), expected, atol=1e-5)


def test_gradients_equal_the_estimator_engine(iris):
    arch = Architecture(3, 2, "angle_x", "rxry", ("odd", "full"))
    x = torch.tensor(iris[0][:4], dtype=torch.float32)
    y = torch.tensor(iris[2][:4])
    grads = {}
    for engine in ("statevector", "estimator"):
        model = arch.model(n_features=4, n_classes=3, seed=2, dropout=0.0, engine=engine)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        grads[engine] = (float(loss.detach()), {k: p.grad.clone() for k, p in model.named_parameters()})
    assert grads["statevector"][0] == pytest.approx(grads["estimator"][0], abs=1e-6)
    ours, reference = grads["statevector"][1], grads["estimator"][1]
    assert ours.keys() == reference.keys() and "quantum.weight" in ours
    for name in ours:
        assert torch.allclose(ours[name].double(), reference[name].double(), atol=1e-5), name


@pytest.mark.parametrize("field, value", [
    ("n_features", 0), ("n_features", -2), ("n_features", 2.5), ("n_features", True), ("n_features", "4"),
    ("n_classes", 1), ("n_classes", 0), ("n_classes", 3.0), ("n_classes", None),
])
def test_invalid_sizes(field, value):
    args = {"n_features": 4, "n_classes": 3, field: value}
    with pytest.raises(ValueError) as info:
        Architecture(2, 1).model(**args)
    assert field in str(info.value) and "allowed" in str(info.value)


def test_model_shapes():
    arch = Architecture(3, 1, "amplitude")
    model = arch.model(n_features=5, n_classes=4, seed=0)
    assert model.pre[-1].out_features == arch.n_features == 8
    assert model.head.in_features == 3 and model.head.out_features == 4
    assert model.quantum.weight.shape == (arch.n_weights,)
    assert model(torch.randn(6, 5)).shape == (6, 4)
    with pytest.raises(ValueError, match="at least 2 samples"):
        train_model(model, np.zeros((3, 5)), np.zeros(2))


def test_seed_makes_models_and_training_deterministic(iris):
    X_train, _, y_train, _ = iris
    arch = Architecture(3, 2, "angle_y", "rxry", "chain")
    a, b, c = (arch.model(n_features=4, n_classes=3, seed=s) for s in (5, 5, 6))
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))
    losses_a = train_model(a, X_train[:40], y_train[:40], epochs=3, seed=9)
    losses_b = train_model(b, X_train[:40], y_train[:40], epochs=3, seed=9)  # dropout masks included
    assert losses_a == losses_b
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    losses_c = train_model(c, X_train[:40], y_train[:40], epochs=3, seed=10)
    assert losses_c != losses_a


@pytest.fixture(scope="module")
def digits():
    return standardised_split(*load_digits(return_X_y=True), test_size=0.4)


@pytest.mark.parametrize("arch", [
    Architecture(4, 1, "angle_x", "rxryrz", "chain"),
    Architecture(4, 2, "angle_y", "ry", ("odd", "odd")),
    Architecture(4, 2, "angle_z", "rxry", "all"),
    Architecture(4, 1, "amplitude", "ry", "chain"),
    Architecture(4, 2, "zz", "ry", ("odd", "odd")),
], ids=lambda a: a.key)
def test_every_embedding_family_trains_under_the_defaults(digits, arch):
    """train_model with its defaults only (Adam at 0.02, batch 32; the embedding's normalisation and
    angle map): every family learns digits (10 classes, 4 qubits) in 8 epochs. Without the
    normalisation before the angle map, angle_x, angle_z and zz end at 0.41-0.65 here."""
    X_train, X_test, y_train, y_test = digits
    model = arch.model(n_features=64, n_classes=10, seed=0)
    train_model(model, X_train, y_train, epochs=8)
    accuracy = (predict_logits(model, X_test).argmax(1) == y_test).mean()
    assert accuracy >= 0.7, accuracy


def test_embedding_norm_is_torchs_batch_norm():
    """The thread-count-independent norm gives BatchNorm1d's outputs, running statistics and state
    dict (training and evaluation), and on its first m channels what a BatchNorm1d of m gives,
    leaving the other channels' statistics alone."""
    from qiskit_qnas.model import EmbeddingNorm

    torch.manual_seed(0)
    ours, torchs = EmbeddingNorm(5), torch.nn.BatchNorm1d(5)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2)
        ours.bias.uniform_(-1, 1)
    torchs.load_state_dict(ours.state_dict())
    for _ in range(3):
        x = torch.randn(7, 5) * 3 + 1
        assert torch.allclose(ours(x), torchs(x), atol=1e-6)
    for key, value in torchs.state_dict().items():
        assert torch.allclose(ours.state_dict()[key].float(), value.float(), atol=1e-6), key
    ours.eval(), torchs.eval()
    x = torch.randn(4, 5)
    assert torch.allclose(ours(x), torchs(x), atol=1e-6)

    wide, narrow = EmbeddingNorm(5), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        wide.weight.uniform_(0.5, 2)
        narrow.weight.copy_(wide.weight[:3])
    x = torch.randn(6, 3) * 2 - 1
    assert torch.allclose(wide.first(x, 3), narrow(x), atol=1e-6)
    assert torch.allclose(wide.running_mean[:3], narrow.running_mean, atol=1e-7)
    assert torch.allclose(wide.running_var[:3], narrow.running_var, atol=1e-6)
    assert torch.equal(wide.running_mean[3:], torch.zeros(2)) and torch.equal(wide.running_var[3:], torch.ones(2))
