"""Noise-adaptive training: the injected errors' average effect (simulated exactly as a density
matrix, or sampled as trajectories) against Qiskit's density matrices and Aer's density-matrix
simulation of the same noise model, and against a real fake-backend noise model."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.quantum_info import DensityMatrix, Operator, SparsePauliOp
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, QuantumError, ReadoutError, depolarizing_error, thermal_relaxation_error
from qiskit_ibm_runtime.fake_provider import FakeManilaV2, FakeSherbrooke, FakeTorino

from qiskit_qnas.engines import StatevectorProgram
from qiskit_qnas.engines.density_matrix import DensityMatrixProgram
from qiskit_qnas.noise import TrainingNoise, check_noise_aware_target, depolarizing_parameter
from qiskit_qnas.space import Architecture, SearchSpace
from qiskit_qnas.supercircuit import SuperCircuit, compiled_program
from qiskit_qnas.targets import AerTarget, resolve_target

ARCH = Architecture(n_qubits=3, n_layers=2, embedding="angle_y", rotation="rxry", entangler="chain")
ONE_QUBIT = {0: 0.03, 1: 0.06, 2: 0.015}  # depolarizing parameters of rx / ry per qubit
TWO_QUBIT = {(0, 1): 0.08, (1, 2): 0.05}
READOUT = {0: (0.04, 0.09), 1: (0.02, 0.05), 2: (0.07, 0.03)}  # (P(1|0), P(0|1))


def depolarizing_model() -> NoiseModel:
    model = NoiseModel()
    for q, lam in ONE_QUBIT.items():
        model.add_quantum_error(depolarizing_error(lam, 1), ["rx", "ry"], [q])
    for pair, lam in TWO_QUBIT.items():
        model.add_quantum_error(depolarizing_error(lam, 2), ["cx"], list(pair))
    for q, (e0, e1) in READOUT.items():
        model.add_readout_error(ReadoutError([[1 - e0, e0], [e1, 1 - e1]]), [q])
    return model


def data(arch: Architecture, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return (torch.tensor(rng.uniform(-np.pi, np.pi, (n, arch.n_inputs))),
            torch.tensor(rng.uniform(-np.pi, np.pi, arch.n_weights)))


def mixed_circuit() -> tuple[QuantumCircuit, ParameterVector, ParameterVector]:
    """Every kind of gate the density-matrix engine compiles, with affine and per-sample angles."""
    x, w = ParameterVector("x", 3), ParameterVector("w", 4)
    qc = QuantumCircuit(3)
    qc.ry(x[0], 0)
    qc.rx(2 * x[1] + 0.3, 1)
    qc.sx(2)
    qc.rz(w[0] + x[2], 2)
    qc.cx(0, 1)
    qc.ecr(1, 2)
    qc.u(w[1], w[2], x[0], 0)
    qc.cz(0, 2)
    qc.rzz(w[3], 0, 1)
    qc.p(x[1], 2)
    qc.h(1)
    qc.swap(0, 2)
    qc.x(1)
    qc.ry(w[2], 1)
    return qc, x, w


def qiskit_density_matrix(circuit: QuantumCircuit, channels: dict) -> np.ndarray:
    """Qiskit's own density matrix of ``circuit`` (bound) with channels after instructions (floats:
    depolarising parameters)."""
    rho = DensityMatrix.from_label("0" * circuit.num_qubits)
    for k, instruction in enumerate(circuit.data):
        qubits = [circuit.find_bit(q).index for q in instruction.qubits]
        rho = rho.evolve(Operator(instruction.operation), qubits)
        if k in channels:
            channel = channels[k]
            if isinstance(channel, float):
                channel = depolarizing_error(channel, len(qubits))
            rho = rho.evolve(channel.to_quantumchannel(), qubits)
    return rho.data


def test_density_matrix_engine_equals_qiskit_and_its_gradients_finite_differences():
    qc, x, w = mixed_circuit()
    rng = np.random.default_rng(1)
    channels = {k: float(rng.uniform(0.02, 0.2)) for k in range(len(qc.data)) if k % 2 == 0}
    # Aer errors as such: thermal relaxation after the RX, an asymmetric two-qubit one after the CX
    channels[1] = thermal_relaxation_error(50e-6, 30e-6, 5e-6)
    channels[4] = thermal_relaxation_error(40e-6, 20e-6, 3e-6).expand(depolarizing_error(0.1, 1))
    program = DensityMatrixProgram(qc, list(x), list(w), channels)
    X, W = rng.uniform(-3, 3, (4, 3)), rng.uniform(-3, 3, 4)
    ours = program.density_matrix(torch.tensor(X), torch.tensor(W)).numpy()

    def reference(xb, wb):
        return qiskit_density_matrix(qc.assign_parameters(dict(zip([*x, *w], [*xb, *wb]))), channels)

    for b in range(4):
        assert np.abs(ours[b] - reference(X[b], W)).max() < 1e-12
    # d<Z_0 + 2 Z_2>/d(x, w) by autograd against central differences of Qiskit's density matrices
    observable = SparsePauliOp.from_sparse_list([("Z", [0], 1.0), ("Z", [2], 2.0)], 3)
    program = DensityMatrixProgram(qc, list(x), list(w), channels, [observable])
    xt, wt = torch.tensor(X[:1], requires_grad=True), torch.tensor(W, requires_grad=True)
    program.expectation(xt, wt).sum().backward()
    matrix = observable.to_matrix()
    params, h = np.concatenate([X[0], W]), 1e-6
    numeric = []
    for i in range(len(params)):
        up, down = params.copy(), params.copy()
        up[i] += h
        down[i] -= h
        values = [np.trace(matrix @ reference(p[:3], p[3:])).real for p in (up, down)]
        numeric.append((values[0] - values[1]) / (2 * h))
    assert np.allclose(np.concatenate([xt.grad[0].numpy(), wt.grad.numpy()]), numeric, atol=1e-7)


def test_density_matrix_engine_without_channels_is_the_statevector_engine():
    qc, x, w = mixed_circuit()
    X, W = data_of(3, 4, 5)
    dense = DensityMatrixProgram(qc, list(x), list(w))
    pure = StatevectorProgram(qc.decompose(gates_to_decompose=["ecr"]), list(x), list(w))  # it runs no ECR
    xt, wt = X.clone().requires_grad_(), W.clone().requires_grad_()
    values = dense.expectation(xt, wt)
    values.sum().backward()
    xs, ws = X.clone().requires_grad_(), W.clone().requires_grad_()
    reference = pure.expectation(xs, ws)
    reference.sum().backward()
    assert torch.allclose(values, reference, atol=1e-12)
    assert torch.allclose(xt.grad, xs.grad, atol=1e-10) and torch.allclose(wt.grad, ws.grad, atol=1e-10)


def test_density_matrix_engine_rejects_what_it_cannot_run():
    qc, x, w = mixed_circuit()
    with pytest.raises(ValueError, match="instruction index"):
        DensityMatrixProgram(qc, list(x), list(w), {len(qc.data): 0.1})
    with pytest.raises(ValueError, match="at most 6 qubits"):
        DensityMatrixProgram(QuantumCircuit(7), [], [])
    measured = qc.copy()
    measured.measure_all()
    with pytest.raises(ValueError, match="without measurements"):
        DensityMatrixProgram(measured, list(x), list(w))


def data_of(n_inputs: int, n_weights: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return torch.tensor(rng.uniform(-np.pi, np.pi, (n, n_inputs))), torch.tensor(rng.uniform(-np.pi, np.pi, n_weights))


def test_depolarizing_parameter_inverts_the_average_gate_infidelity():
    from qiskit.quantum_info import average_gate_fidelity

    for k, lam in ((1, 0.03), (2, 0.08), (2, 1.0)):
        infidelity = 1 - average_gate_fidelity(depolarizing_error(lam, k))
        assert depolarizing_parameter(infidelity, k) == pytest.approx(lam, abs=1e-12)
    assert depolarizing_parameter(0.9, 1) == pytest.approx(4 / 3)  # capped at the uniform-Pauli channel


def test_locations_carry_the_noise_models_rates():
    noise = TrainingNoise(AerTarget(AerSimulator(method="density_matrix", noise_model=depolarizing_model())))
    program = noise.program(ARCH)
    # 3 embedding RY + 2 layers x 3 qubits x (RX, RY) = 15 one-qubit locations, 4 CX on (0,1)/(1,2)
    lambdas = sorted(np.round(program.depolarizing.numpy(), 12).tolist())
    expected = sorted([ONE_QUBIT[q] for q in range(3)] * 5 + list(TWO_QUBIT.values()) * 2)
    assert lambdas == pytest.approx(expected, abs=1e-12)
    assert program.n_pauli == 2 * (15 + 2 * 4)
    e0, e1 = np.array([READOUT[q] for q in range(3)]).T
    assert program.readout_scale.numpy() == pytest.approx(1 - e0 - e1)
    assert program.readout_offset.numpy() == pytest.approx(e1 - e0)


def test_average_of_trajectories_equals_aer_density_matrix():
    """Mean over T trajectories vs Aer's exact density-matrix expectation values (readout applied by
    AerTarget): within 5 standard errors of the mean (the standard error from the T samples)."""
    target = AerTarget(AerSimulator(method="density_matrix", noise_model=depolarizing_model()))
    noise = TrainingNoise(target)
    x, w = data(ARCH, 5)
    mean, stderr = noise.average_expectation(ARCH, x, w, n_trajectories=4000)
    aer = target.expectation_values(ARCH, x.numpy(), w.numpy()).values
    exact = compiled_program(ARCH).expectation(x, w).numpy()
    assert np.abs(aer - exact).max() > 0.05  # the noise matters at these rates
    assert np.all(np.abs(mean - aer) <= 5 * stderr + 1e-9), (mean - aer, stderr)


def test_default_training_objective_is_the_averaged_channel_exactly():
    """What noise-aware training trains on by default (``trajectories=None``): the averaged noisy
    channel, simulated as a density matrix, equal to Aer's density-matrix EstimatorV2 of the same
    noise model (readout applied by AerTarget) to 1e-8, differentiable, and without sampling."""
    target = AerTarget(AerSimulator(method="density_matrix", noise_model=depolarizing_model()))
    noise = TrainingNoise(target)
    x, w = data(ARCH, 6)
    aer = target.expectation_values(ARCH, x.numpy(), w.numpy()).values
    assert np.abs(aer - compiled_program(ARCH).expectation(x, w).numpy()).max() > 0.05
    assert np.abs(noise.exact_average(ARCH, x, w) - aer).max() < 1e-8
    inputs = x.clone().requires_grad_()
    values = noise.expectation(ARCH, inputs, w)
    assert np.abs(values.detach().numpy() - aer).max() < 1e-8
    assert torch.equal(noise.expectation(ARCH, x, w), values.detach())  # deterministic
    values.sum().backward()
    assert inputs.grad.abs().sum() > 0


def test_k_trajectories_estimate_the_averaged_channel_with_k_times_less_variance():
    """``trajectories=K``: every sample replicated K times with independent draws, the read-outs
    averaged: unbiased for the averaged channel, its variance 1/K of a single trajectory's."""
    target = AerTarget(AerSimulator(method="density_matrix", noise_model=depolarizing_model()))
    x, w = data(ARCH, 4, seed=2)
    exact = TrainingNoise(target).exact_average(ARCH, x, w)
    noises = {k: TrainingNoise(target, trajectories=k) for k in (1, 8)}
    torch.manual_seed(0)
    runs = {k: np.stack([noise.expectation(ARCH, x, w).detach().numpy() for _ in range(400)])
            for k, noise in noises.items()}
    for k, values in runs.items():
        assert values.shape == (400, 4, ARCH.n_qubits)
        stderr = values.std(0, ddof=1) / np.sqrt(len(values))
        assert np.all(np.abs(values.mean(0) - exact) <= 5 * stderr + 1e-9), k
    ratio = runs[1].var(0).sum() / runs[8].var(0).sum()
    assert 5 < ratio < 12, ratio


@pytest.mark.parametrize("trajectories", [0, -1, 1.5, True, "8"])
def test_bad_trajectories_are_refused(trajectories):
    target = AerTarget(AerSimulator(method="density_matrix", noise_model=depolarizing_model()))
    with pytest.raises(ValueError, match="trajectories"):
        TrainingNoise(target, trajectories=trajectories)


def test_wide_circuits_fall_back_to_trajectories():
    """Beyond 6 physical qubits the averaged channel is sampled (DEFAULT_TRAJECTORIES per sample)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target = resolve_target(FakeTorino(), mode="runtime")
    arch = Architecture(n_qubits=7, n_layers=1, embedding="angle_y", rotation="ry", entangler="chain")
    noise = TrainingNoise(target)
    program = noise.program(arch)
    assert program.density is None and len(program.physical_qubits) == 7
    x, w = data(arch, 3)
    with pytest.raises(ValueError, match="up to 6 physical qubits"):
        noise.exact_average(arch, x, w)
    torch.manual_seed(0)
    first = noise.expectation(arch, x, w)
    assert first.shape == (3, 7) and not torch.allclose(first, noise.expectation(arch, x, w))


def test_readout_map_matches_aer_measurement_sampling():
    """The readout map in expectation against Aer's own measurement with readout errors (counts)."""
    from qiskit import transpile

    simulator = AerSimulator(method="density_matrix", noise_model=depolarizing_model(), seed_simulator=11)
    noise = TrainingNoise(AerTarget(simulator))
    x, w = data(ARCH, 2, seed=3)
    mean, stderr = noise.average_expectation(ARCH, x, w, n_trajectories=4000)
    shots = 40_000
    for k in range(2):
        circuit = ARCH.circuit().assign_parameters(dict(zip(ARCH.input_params, x[k].tolist()))
                                                   | dict(zip(ARCH.weight_params, w.tolist())))
        circuit.measure_all()
        counts = simulator.run(transpile(circuit, simulator, optimization_level=0), shots=shots).result().get_counts()
        for q in range(ARCH.n_qubits):
            z = sum(c * (1 if bits[::-1][q] == "0" else -1) for bits, c in counts.items()) / shots
            assert abs(mean[k, q] - z) <= 5 * (stderr[k, q] + 1 / np.sqrt(shots)), (k, q, mean[k, q], z)


@pytest.mark.parametrize("backend", [FakeTorino, FakeSherbrooke], ids=["cz", "ecr"])
def test_noise_free_program_is_the_logical_circuit(backend):
    """The reduced ISA circuit (layout, routing, basis, ECR decomposed) with every Pauli angle 0 is
    the logical circuit; rates come from the backend's Target on a Runtime target."""
    arch = Architecture(n_qubits=4, n_layers=2, embedding="angle_y", rotation="rxryrz", entangler="all")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target = resolve_target(backend(), mode="runtime")
    program = TrainingNoise(target).program(arch)
    x, w = data(arch, 6)
    zeros = torch.zeros(6, program.n_pauli, dtype=torch.float64)
    silent = program.program.expectation(torch.cat([x, zeros], 1), w)
    assert torch.allclose(silent, compiled_program(arch).expectation(x, w), atol=1e-10)
    # the exact averaged channel (ECR / CZ in the density-matrix engine) against sampled trajectories
    mean, stderr = TrainingNoise(target).average_expectation(arch, x, w, n_trajectories=2000)
    assert np.all(np.abs(TrainingNoise(target).exact_average(arch, x, w) - mean) <= 5 * stderr + 1e-9)
    measure = target.backend.target["measure"]
    readout = torch.tensor([measure[(q,)].error for q in target.run_isa(arch)[0].layout.final_index_layout()[:4]])
    assert torch.allclose(program.readout_scale, 1 - 2 * readout.to(torch.float64))
    assert len(program.depolarizing) > 0 and float(program.depolarizing.max()) < 0.2


def test_fake_manila_noise_moves_expectations_like_aer():
    """Against ``AerSimulator.from_backend(FakeManilaV2())`` (depolarising + thermal relaxation +
    readout), the target noise-aware training is measured on: the averaged channel of the noise
    model's own errors (the training default) equals Aer's values to 1e-8. Sampled trajectories fold
    relaxation into depolarisation, so for them only direction and size are compared: where Aer
    moves <Z_i> by more than 0.03 they move it the same way, within 0.03 + 30 % of Aer's shift."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target = resolve_target(FakeManilaV2(), mode="aer")
    noise = TrainingNoise(target)
    for entangler in ("chain", "all"):  # "all": a ring, routed with SWAPs on Manila's line
        arch = Architecture(n_qubits=4, n_layers=2, embedding="angle_y", rotation="ry", entangler=entangler)
        x, w = data(arch, 12, seed=5)
        aer = target.expectation_values(arch, x.numpy(), w.numpy()).values
        assert np.abs(noise.exact_average(arch, x, w) - aer).max() < 1e-8, entangler
    arch = Architecture(n_qubits=4, n_layers=2, embedding="angle_y", rotation="ry", entangler="chain")
    x, w = data(arch, 12, seed=5)
    mean, _ = noise.average_expectation(arch, x, w, n_trajectories=3000)
    aer = target.expectation_values(arch, x.numpy(), w.numpy()).values
    exact = compiled_program(arch).expectation(x, w).numpy()
    shift_aer, shift_injected = aer - exact, mean - exact
    moved = np.abs(shift_aer) > 0.03
    assert moved.sum() >= 5
    assert np.all(np.sign(shift_injected[moved]) == np.sign(shift_aer[moved]))
    assert np.all(np.abs(mean - aer) <= 0.03 + 0.3 * np.abs(shift_aer))


def test_noise_model_errors_are_converted_once_per_gate_and_qubits(monkeypatch):
    """A SuperCircuit compiles a noisy program per member it samples; the noise model's errors are
    turned into channels once per gate and qubits for the whole ``TrainingNoise``, not per gate of
    every member (the conversion was 98% of a compile). The real conversion runs, counted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target = resolve_target(FakeManilaV2(), mode="aer")
    convert = QuantumError.to_quantumchannel
    converted = []
    monkeypatch.setattr(QuantumError, "to_quantumchannel", lambda error: converted.append(error) or convert(error))
    noise = TrainingNoise(target)
    members = [Architecture(n_qubits=4, n_layers=n, embedding="angle_y", rotation="ry", entangler="all")
               for n in (1, 2, 3)]
    for arch in members:
        noise.program(arch)
    circuits = [target.run_isa(arch)[0] for arch in members]
    gates_and_qubits = {(inst.operation.name, tuple(isa.find_bit(q).index for q in inst.qubits))
                        for isa in circuits for inst in isa.data}
    assert 0 < len(converted) <= len(gates_and_qubits) < sum(len(isa.data) for isa in circuits)


def test_exact_and_ideal_targets_are_refused():
    for target in (resolve_target(None), AerTarget(AerSimulator())):
        with pytest.raises(ValueError, match="noise_aware"):
            check_noise_aware_target(target)
        with pytest.raises(ValueError, match="noise_aware"):
            TrainingNoise(target)


def test_supercircuit_trains_under_noise_and_evaluates_exactly():
    space = SearchSpace(qubits=(3, 3), layers=(2, 2), embeddings=("angle_y",), rotations=("rxry",),
                        entanglers=("chain",))
    model = SuperCircuit(space, n_features=5, n_classes=2, dropout=0.0)
    noise = TrainingNoise(AerTarget(AerSimulator(method="density_matrix", noise_model=depolarizing_model())))
    X = torch.randn(8, 5)
    model.eval()
    exact = model(X, ARCH)
    model.noise = noise
    assert torch.equal(model(X, ARCH), exact)  # evaluation ignores the noise
    model.noise = pickle.loads(pickle.dumps(noise))  # picklable (process pools), programs rebuilt
    model.train()
    noisy = model(X, ARCH)
    assert not torch.allclose(noisy, exact)
    assert torch.allclose(model(X, ARCH), noisy, atol=1e-6)  # the averaged channel: nothing sampled
    noisy.sum().backward()
    grad = model.quantum_weights[ARCH.embedding].grad  # the weights of the architecture's embedding family
    assert grad is not None and grad.abs().sum() > 0
    assert copy.deepcopy(model).noise is model.noise  # fine-tuning copies share the compiled programs
    model.noise = pickle.loads(pickle.dumps(TrainingNoise(noise.target, trajectories=4)))
    assert model.noise.trajectories == 4
    torch.manual_seed(0)
    sampled = model(X, ARCH)
    torch.manual_seed(0)
    assert torch.equal(model(X, ARCH), sampled)  # trajectories come from torch's seeded generator
    assert not torch.allclose(model(X, ARCH), sampled)


# --- noise scaled as a study variable ------------------------------------------------------------------
def test_a_scaled_noise_backend_scales_every_error_and_coherence_time_and_leaves_the_device_alone():
    from qiskit_ibm_runtime.fake_provider import FakeYorktownV2

    from qiskit_qnas.backends import MAX_SCALED_ERROR, scaled_noise_backend

    device = FakeYorktownV2()
    before = copy.deepcopy(device.target)
    scaled = scaled_noise_backend(device, 4)
    assert scaled.name == "fake_yorktown_noise_x4"
    for name in ("cx", "sx", "x", "measure"):
        for qargs, properties in device.target[name].items():
            assert scaled.target[name][qargs].error == pytest.approx(min(4 * properties.error, MAX_SCALED_ERROR))
            assert scaled.target[name][qargs].duration == properties.duration
            assert properties.error == before[name][qargs].error  # the device is untouched
    for q, properties in enumerate(device.target.qubit_properties):
        assert scaled.target.qubit_properties[q].t1 == pytest.approx(properties.t1 / 4)
        assert scaled.target.qubit_properties[q].t2 == pytest.approx(properties.t2 / 4)
    for bad in (0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="factor"):
            scaled_noise_backend(device, bad)


def test_aer_on_a_scaled_backend_measures_more_noise_as_the_factor_grows():
    """Cross-checked on Aer itself (exact noisy expectation values): factor 1 is the device's own noise,
    and the read-outs move away from the noiseless statevector's as the factor grows."""
    from qiskit_ibm_runtime.fake_provider import FakeYorktownV2

    from qiskit_qnas.backends import scaled_noise_backend

    arch = Architecture(n_qubits=3, n_layers=3, embedding="angle_y", rotation="ry", entangler="all")
    rng = np.random.default_rng(0)
    inputs, weights = rng.uniform(0, np.pi, (6, arch.n_inputs)), rng.uniform(-np.pi, np.pi, arch.n_weights)
    exact = resolve_target(None).expectation_values(arch, inputs, weights).values

    def on(backend):
        return AerTarget(AerSimulator.from_backend(backend), seed=0).expectation_values(arch, inputs, weights).values

    device = FakeYorktownV2()
    np.testing.assert_allclose(on(scaled_noise_backend(device, 1)), on(device), atol=1e-12)
    distances = [np.abs(on(scaled_noise_backend(device, factor)) - exact).mean() for factor in (0.25, 1, 4)]
    assert distances[0] < distances[1] < distances[2], distances
    target = resolve_target(scaled_noise_backend(device, 2), mode="aer")  # usable as a search's target
    assert isinstance(target, AerTarget) and "noise_x2" in target.name
