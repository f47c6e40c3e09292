"""SuperCircuit weight sharing: slicing, inheritance and sandwich training."""

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Statevector
from sklearn.datasets import load_iris

from qiskit_qnas import Architecture, SearchSpace
from qiskit_qnas.circuits import amplitude_angles, weight_slots, z_observables
from qiskit_qnas.supercircuit import (
    SuperCircuit,
    amplitude_expectation,
    compiled_program,
    finetune,
    sandwich,
    train_supercircuit,
)

SPACE = SearchSpace(qubits=(2, 4), layers=(1, 3), ranges=(1, 2))
MEMBERS = [
    Architecture(4, 3, "angle_y", "rxryrz", ("odd", "all", "full"), (1, 2, 1)),
    Architecture(2, 1, "angle_x", "ry", "none"),
    Architecture(3, 2, "amplitude", "rxry", ("chain", "even")),
    Architecture(3, 2, "zz", "ry", "all", 2),
    Architecture(4, 1, "angle_z", "rxry", "full"),
]


@pytest.fixture(scope="module")
def supercircuit():
    torch.manual_seed(0)
    sc = SuperCircuit(SPACE, n_features=4, n_classes=3, seed=0)
    with torch.no_grad():  # spread the quantum weights so that slicing mistakes show
        for weights in sc.quantum_weights.values():
            weights.uniform_(-np.pi, np.pi)
    return sc.eval()


@pytest.mark.parametrize("arch", MEMBERS, ids=lambda a: a.key)
def test_extracted_candidate_equals_the_supercircuit_slice(supercircuit, arch):
    x = torch.randn(7, 4)
    with torch.no_grad():
        shared = supercircuit(x, arch)
        model = supercircuit.extract(arch)  # an HQNN running through TorchConnector
        standalone = model(x)
    assert torch.allclose(shared, standalone, atol=1e-5)


@pytest.mark.parametrize("arch", MEMBERS, ids=lambda a: a.key)
def test_quantum_layer_equals_qiskit_statevector(supercircuit, arch):
    x = torch.randn(3, 4)
    with torch.no_grad():
        inputs = supercircuit.circuit_inputs(arch, x).double().numpy()
        weights = supercircuit.circuit_weights(arch).numpy()
        logits = supercircuit(x, arch).double().numpy()
    head = supercircuit.heads[arch.embedding]
    head_w = head.weight.detach().double().numpy()[:, :arch.n_qubits]
    head_b = head.bias.detach().double().numpy()
    for row, sample in enumerate(inputs):
        bound = arch.circuit().assign_parameters(
            dict(zip(arch.input_params, sample)) | dict(zip(arch.weight_params, weights)))
        state = Statevector(bound)
        z = np.array([state.expectation_value(o).real for o in z_observables(arch.n_qubits)])
        np.testing.assert_allclose(logits[row], head_w @ z + head_b, atol=1e-5)


@pytest.mark.parametrize("arch", [
    Architecture(3, 2, "amplitude", "rxryrz", ("full", "odd")),
    Architecture(4, 1, "amplitude", "ry", "chain"),
    Architecture(1, 2, "amplitude", "rxry", "none"),
], ids=lambda a: a.key)
def test_amplitude_fast_path_equals_the_compiled_circuit_with_gradients(arch):
    """The SuperCircuit's amplitude shortcut (basis-state rows of the trainable part) gives the values
    and autograd gradients of the compiled RY-tree circuit."""
    rng = np.random.default_rng(5)
    features = torch.tensor(rng.normal(size=(4, arch.n_features)), requires_grad=True)
    weights = torch.tensor(rng.uniform(-np.pi, np.pi, arch.n_weights), requires_grad=True)
    cotangent = torch.tensor(rng.normal(size=(4, arch.n_qubits)))
    results = []
    for z in (amplitude_expectation(arch, features, weights),
              compiled_program(arch).expectation(amplitude_angles(features), weights)):
        results.append((z.detach(), *torch.autograd.grad((z * cotangent).sum(), (features, weights))))
    for fast, compiled in zip(*results):
        assert torch.allclose(fast, compiled, atol=1e-10)


@pytest.mark.parametrize("hidden", [(12, 8), "cnn-2-3-8"], ids=["dense-widths", "cnn"])
def test_deeper_and_convolutional_trunks_are_shared_inherited_and_trained(hidden):
    """``hidden`` as a tuple of widths or a convolutional trunk (16 features = a 4x4 image): every
    member's extracted HQNN equals its slice, and fine-tuning trains the trunk of a private copy."""
    sc = SuperCircuit(SPACE, n_features=16, n_classes=3, hidden=hidden, seed=2).eval()
    x = torch.randn(6, 16)
    for arch in MEMBERS:
        with torch.no_grad():
            model = sc.extract(arch)
            assert torch.allclose(sc(x, arch), model(x), atol=1e-5)
    assert isinstance(sc.trunk[0], torch.nn.Unflatten) == (hidden == "cnn-2-3-8")
    before = {k: v.clone() for k, v in sc.state_dict().items()}
    y = torch.randint(0, 3, (6,))
    tuned = finetune(sc, MEMBERS[1], x.numpy(), y.numpy(), epochs=2, batch_size=3)
    assert all(torch.equal(v, sc.state_dict()[k]) for k, v in before.items())  # shared weights untouched
    trunk_changed = [not torch.equal(a, b) for a, b in zip(tuned.pre[:-1].state_dict().values(),
                                                          sc.trunk.state_dict().values())]
    assert trunk_changed and all(trunk_changed)


def test_a_shared_weight_means_the_same_thing_in_every_candidate(supercircuit):
    ry_only = Architecture(3, 2, "angle_y", "ry", "chain")
    rxry = Architecture(4, 2, "angle_y", "rxry", "full")
    for arch in (ry_only, rxry):
        table = supercircuit.quantum_weights[arch.embedding].detach()
        weights = supercircuit.circuit_weights(arch).detach()
        for k, (layer, qubit, slot) in enumerate(weight_slots(arch)):
            assert weights[k] == table[layer, qubit, slot]
    # the RY weight of qubit 1 in layer 1 is one number, wherever it sits in each candidate's vector
    k_ry = weight_slots(ry_only).index((1, 1, 1))
    k_rxry = weight_slots(rxry).index((1, 1, 1))
    assert supercircuit.circuit_weights(ry_only)[k_ry] == supercircuit.circuit_weights(rxry)[k_rxry]


def test_gradients_reach_only_the_used_slice():
    sc = SuperCircuit(SPACE, n_features=4, n_classes=3, seed=1)
    arch = Architecture(2, 1, "angle_y", "ry", "none")
    sc(torch.randn(5, 4), arch).sum().backward()
    grad = sc.quantum_weights["angle_y"].grad
    assert grad[0, :2, 1].abs().sum() > 0
    mask = torch.ones_like(grad, dtype=torch.bool)
    mask[0, :2, 1] = False
    assert grad[mask].abs().sum() == 0
    assert sc.heads["angle_y"].weight.grad[:, 2:].abs().sum() == 0
    assert sc.projections["angle_y"].weight.grad[2:].abs().sum() == 0
    assert sc.norms["angle_y"].weight.grad[2:].abs().sum() == 0 < sc.norms["angle_y"].weight.grad[:2].abs().sum()
    # few-shot: the other families' circuit weights, heads and projections are their own
    for family in ("angle_x", "angle_z", "amplitude", "zz"):
        assert sc.quantum_weights[family].grad is None and sc.heads[family].weight.grad is None
        assert sc.projections[family].weight.grad is None


def test_non_members_are_refused():
    sc = SuperCircuit(SearchSpace(qubits=(2, 3), layers=(1, 2), embeddings=("angle_y",)), 4, 3)
    with pytest.raises(ValueError, match="not a member"):
        sc(torch.randn(2, 4), Architecture(4, 1))
    with pytest.raises(ValueError, match="not a member"):
        sc.extract(Architecture(2, 1, embedding="angle_x"))


def test_sandwich_holds_the_largest_and_the_smallest_and_the_families_take_turns():
    rng = np.random.default_rng(0)
    steps = [sandwich(SPACE, rng, n_random=3, step=step) for step in range(2 * len(SPACE.embeddings))]
    for step, members in enumerate(steps):
        assert len(members) == 5
        assert (members[0].n_qubits, members[0].n_layers, members[0].rotation) == (4, 3, "rxryrz")
        assert (members[1].n_qubits, members[1].n_layers, members[1].rotation) == (2, 1, "ry")
        assert members[0].embedding == members[1].embedding == SPACE.embeddings[step % len(SPACE.embeddings)]
        assert all(m in SPACE for m in members)


@pytest.mark.parametrize("embedding", SPACE.embeddings)
def test_every_family_starts_with_a_signal(embedding):
    """With the initial shared weights, every family's outputs move with the input (the phase
    embeddings included: their first RY starts at pi/2), measured on Qiskit's Statevector."""
    sc = SuperCircuit(SPACE, n_features=4, n_classes=3, seed=0)
    rng = np.random.default_rng(1)
    for arch in (Architecture(3, 1, embedding, "ry", "chain"), Architecture(2, 2, embedding, "rxryrz", "none")):
        weights = sc.circuit_weights(arch).detach().numpy()
        samples = rng.uniform(-np.pi, np.pi, (48, arch.n_inputs)) if embedding != "amplitude" else \
            amplitude_angles(torch.tensor(rng.normal(size=(48, arch.n_features)))).numpy()
        z = []
        for sample in samples:
            bound = arch.circuit().assign_parameters(
                dict(zip(arch.input_params, sample)) | dict(zip(arch.weight_params, weights)))
            state = Statevector(bound)
            z.append([state.expectation_value(o).real for o in z_observables(arch.n_qubits)])
        assert np.std(z, axis=0).mean() > 0.25, (arch.key, np.std(z, axis=0))


def test_batch_normalisation_statistics_are_inherited():
    """A member's normalisation statistics are the first rows of its family's, in the SuperCircuit and
    in the extracted HQNN, after training has moved them."""
    X, y = load_iris(return_X_y=True)
    sc = SuperCircuit(SearchSpace(qubits=(2, 3), layers=(1, 1), embeddings=("angle_y",)), 4, 3, seed=0)
    train_supercircuit(sc, X, y, epochs=1, batch_size=16, seed=0)
    norm = sc.norms["angle_y"]
    assert norm.running_var[:2].sub(1).abs().max() > 1e-3  # trained statistics, not the defaults
    model = sc.extract(Architecture(2, 1, "angle_y", "ry", "none"))
    assert torch.equal(model.norm.running_mean, norm.running_mean[:2])
    assert torch.equal(model.norm.running_var, norm.running_var[:2])


def test_training_lowers_the_loss_and_is_deterministic():
    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    space = SearchSpace(qubits=(2, 3), layers=(1, 2))
    runs = []
    for _ in range(2):
        sc = SuperCircuit(space, 4, 3, seed=5)
        losses = train_supercircuit(sc, X, y, epochs=6, batch_size=32, lr=0.01, seed=5)
        runs.append((losses, sc.state_dict()))
    losses, state = runs[0]
    assert losses[-1] < losses[0]
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(state[k], runs[1][1][k]) for k in state)
    with pytest.raises(ValueError, match="equal length"):
        train_supercircuit(SuperCircuit(space, 4, 3), X, y[:-1], epochs=1)
