"""Execution targets: exact, Aer (with a noise model) and Runtime local testing mode, on real Qiskit
components (fault injection through real primitive subclasses, not mocks)."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import Statevector
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2 as AerEstimator
from qiskit_ibm_runtime.executor_estimator import Estimator as RuntimeEstimator
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qiskit_qnas.circuits import build_circuit, z_observables
from qiskit_qnas.space import Architecture
from qiskit_qnas.targets import (
    DEFAULT_PROXY_SHOTS,
    AerTarget,
    ExactTarget,
    RuntimeTarget,
    TargetError,
    resolve_target,
)

ARCH = Architecture(n_qubits=4, n_layers=2, embedding="angle_y", rotation="rxryrz", entangler=("odd", "even"))


def data(arch: Architecture, n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-np.pi, np.pi, (n, arch.n_inputs)), rng.uniform(-np.pi, np.pi, arch.n_weights)


def statevector_values(arch: Architecture, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    built = build_circuit(arch)
    rows = []
    for sample in x:
        bound = built.circuit.assign_parameters({**dict(zip(built.inputs, sample)), **dict(zip(built.weights, w))})
        state = Statevector(bound)
        rows.append([state.expectation_value(o).real for o in z_observables(arch.n_qubits)])
    return np.array(rows)


@pytest.fixture(scope="module")
def manila():
    return FakeManilaV2()


@pytest.fixture(scope="module")
def noisy_aer(manila):
    return AerSimulator.from_backend(manila)


# --- exact ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", [ARCH, Architecture(3, 2, "zz", "rxry", "all", 2), Architecture(3, 1, "amplitude")])
def test_exact_values_equal_statevector(arch):
    target = resolve_target(None)
    assert isinstance(target, ExactTarget) and target.exact and target.num_qubits is None
    x, w = data(arch)
    evaluation = target.expectation_values(arch, x, w)
    assert evaluation.values.shape == (len(x), arch.n_qubits)
    assert evaluation.attempts == 1 and evaluation.job_seconds is None and evaluation.wall_seconds > 0
    np.testing.assert_allclose(evaluation.values, statevector_values(arch, x, w), atol=1e-10)


def test_runtime_estimate_deterministic_and_recomputed(manila):
    arch = Architecture(3, 1, "angle_y", "ry", "chain")
    target = resolve_target(None, reference_backend=manila)
    first = target.runtime_estimate(arch, n_circuits=10)
    again = resolve_target(None, reference_backend=FakeManilaV2()).runtime_estimate(arch, n_circuits=10)
    assert first == again == target.runtime_estimate(arch, n_circuits=10)
    assert first.backend_name == "fake_manila" and first.shots == DEFAULT_PROXY_SHOTS and first.n_circuits == 10

    # direct recomputation: ASAP schedule of the ISA circuit with the Target's durations, one measurement
    isa = generate_preset_pass_manager(backend=manila, optimization_level=1, seed_transpiler=0).run(
        build_circuit(arch).circuit)
    finish = [0.0] * isa.num_qubits
    for inst in isa.data:
        qargs = tuple(isa.find_bit(q).index for q in inst.qubits)
        end = max(finish[q] for q in qargs) + manila.target[inst.operation.name][qargs].duration
        for q in qargs:
            finish[q] = end
    physical = isa.layout.final_index_layout()[:3]
    critical = max(finish[q] + manila.target["measure"][(q,)].duration for q in physical)
    assert first.critical_path_seconds == pytest.approx(critical, rel=1e-12)
    assert first.seconds == pytest.approx(critical * DEFAULT_PROXY_SHOTS * 10, rel=1e-12)
    assert first.depth == isa.depth()
    assert first.n_two_qubit_gates == sum(inst.operation.num_qubits == 2 for inst in isa.data) > 0
    assert set(first.to_dict()) == {"seconds", "critical_path_seconds", "depth", "two_qubit_depth",
                                    "n_two_qubit_gates", "shots", "n_circuits", "backend_name"}


def test_more_cx_means_larger_proxy():
    target = resolve_target(None)  # default reference backend (FakeTorino)
    light = target.runtime_estimate(Architecture(5, 2, entangler="none"))
    heavy = target.runtime_estimate(Architecture(5, 2, entangler="full"))
    assert light.n_two_qubit_gates == 0 < heavy.n_two_qubit_gates
    assert heavy.seconds > light.seconds and heavy.two_qubit_depth > light.two_qubit_depth
    assert target.backend.num_qubits >= 12 and light.backend_name == "fake_torino"


# --- Aer --------------------------------------------------------------------------------------
def test_aer_noise_model_applies(noisy_aer):
    target = resolve_target(noisy_aer)
    assert isinstance(target, AerTarget) and target.name == "aer:fake_manila" and target.num_qubits == 5
    x, w = data(ARCH)
    noisy = target.expectation_values(ARCH, x, w)
    exact = statevector_values(ARCH, x, w)
    diff = np.abs(noisy.values - exact)
    assert noisy.values.shape == exact.shape
    assert diff.max() > 1e-3 and diff.max() < 0.5
    assert noisy.job_seconds is not None and noisy.job_seconds > 0


def test_ideal_aer_without_shots_is_exact():
    x, w = data(ARCH)
    evaluation = resolve_target(AerSimulator()).expectation_values(ARCH, x, w)
    np.testing.assert_allclose(evaluation.values, statevector_values(ARCH, x, w), atol=1e-8)


def test_aer_readout_error_and_binomial_shots():
    from qiskit_aer.noise import NoiseModel, ReadoutError

    noise = NoiseModel()
    noise.add_all_qubit_readout_error(ReadoutError([[0.9, 0.1], [0.2, 0.8]]))  # P(1|0) = 0.1, P(0|1) = 0.2
    simulator = AerSimulator(noise_model=noise)
    x, w = data(ARCH)
    exact = statevector_values(ARCH, x, w)
    read = resolve_target(simulator).expectation_values(ARCH, x, w).values
    np.testing.assert_allclose(read, (0.2 - 0.1) + (1 - 0.1 - 0.2) * exact, atol=1e-8)
    ignored = resolve_target(simulator, mode="aer")
    ignored.readout_error = False
    np.testing.assert_allclose(ignored.expectation_values(ARCH, x, w).values, exact, atol=1e-8)
    shots = resolve_target(simulator, shots=64, seed=1).expectation_values(ARCH, x, w).values
    counts = (shots + 1) * 64 / 2
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)  # k / 64 grid of 64 shots
    assert np.abs(shots - read).max() < 0.6


def test_fake_backend_aer_mode(manila):
    target = resolve_target(manila, mode="aer", shots=1024, seed=3)
    assert isinstance(target, AerTarget) and target.name == "aer:fake_manila" and target.shots == 1024
    assert target.runtime_estimate(ARCH).shots == 1024


def test_same_seed_same_shot_values(noisy_aer):
    x, w = data(ARCH)
    a = resolve_target(noisy_aer, shots=256, seed=7).expectation_values(ARCH, x, w).values
    b = resolve_target(noisy_aer, shots=256, seed=7).expectation_values(ARCH, x, w).values
    c = resolve_target(noisy_aer, shots=256, seed=8).expectation_values(ARCH, x, w).values
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# --- Runtime local testing mode -----------------------------------------------------------------
class RecordingEstimator(RuntimeEstimator):
    """The client-side Runtime estimator, recording what it is asked to run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["calls"] = []

    def run(self, pubs, **kwargs):
        pubs = list(pubs)
        self.calls.append(pubs)
        return super().run(pubs, **kwargs)


def test_runtime_local_one_broadcast_isa_pub(manila):
    estimator = RecordingEstimator(mode=manila)
    estimator.options.resilience_level = 0
    estimator.options.default_shots = 512
    target = resolve_target(manila, estimator=estimator)
    assert isinstance(target, RuntimeTarget) and target.name == "runtime-local:fake_manila"
    x, w = data(ARCH, n=5)
    evaluation = target.expectation_values(ARCH, x, w)
    assert evaluation.values.shape == (5, 4)
    assert np.abs(evaluation.values - statevector_values(ARCH, x, w)).max() < 0.5
    assert len(estimator.calls) == 1 and len(estimator.calls[0]) == 1
    circuit, observables, values = estimator.calls[0][0]
    assert [len(row) for row in observables] == [1] * 4 and values.shape == (5, circuit.num_parameters)
    for inst in circuit.data:
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        assert manila.target.instruction_supported(inst.operation.name, qargs), (inst.operation.name, qargs)


def test_runtime_local_own_estimator_seeded(manila):
    x, w = data(ARCH, n=4)
    target = resolve_target(manila, shots=256, seed=0)  # seed 0 must still seed the simulator
    assert isinstance(target, RuntimeTarget) and target.shots == 256
    first = target.expectation_values(ARCH, x, w)
    second = resolve_target(manila, shots=256, seed=0).expectation_values(ARCH, x, w)
    assert first.values.shape == (4, 4)
    np.testing.assert_array_equal(first.values, second.values)
    assert np.abs(first.values - statevector_values(ARCH, x, w)).max() < 0.5
    target.close()


def test_legacy_runtime_estimator_accepted(manila):
    from qiskit_ibm_runtime import EstimatorV2 as LegacyEstimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy = LegacyEstimator(mode=manila)
        legacy.options.default_shots = 256
        x, w = data(ARCH, n=3)
        values = resolve_target(manila, estimator=legacy).expectation_values(ARCH, x, w).values
    assert values.shape == (3, 4) and np.all(np.abs(values) <= 1)


# --- faults -------------------------------------------------------------------------------------
class FlakyEstimator(StatevectorEstimator):
    """A StatevectorEstimator whose first ``failures`` runs raise."""

    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures
        self.runs = 0

    def run(self, pubs, *, precision=None):
        self.runs += 1
        if self.runs <= self.failures:
            raise ConnectionError(f"transient failure {self.runs}")
        return super().run(pubs, precision=precision)


class FlakyAerEstimator(AerEstimator):
    failures = 2
    runs = 0

    def run(self, pubs, *, precision=None):
        type(self).runs += 1
        if type(self).runs <= self.failures:
            raise TimeoutError("queue timeout")
        return super().run(pubs, precision=precision)


def test_retries_then_succeeds():
    x, w = data(ARCH)
    flaky = FlakyEstimator(failures=2)
    target = resolve_target(None, estimator=flaky, retry_backoff=0, max_retries=3)
    evaluation = target.expectation_values(ARCH, x, w)
    assert evaluation.attempts == 3 and flaky.runs == 3
    np.testing.assert_allclose(evaluation.values, statevector_values(ARCH, x, w), atol=1e-10)


def test_retries_on_isa_path(noisy_aer):
    x, w = data(ARCH, n=3)
    target = resolve_target(noisy_aer, estimator=FlakyAerEstimator.from_backend(noisy_aer), retry_backoff=0)
    evaluation = target.expectation_values(ARCH, x, w)
    assert evaluation.attempts == 3 and evaluation.values.shape == (3, 4)


def test_always_failing_raises_target_error():
    flaky = FlakyEstimator(failures=10**9)
    target = resolve_target(None, estimator=flaky, retry_backoff=0, max_retries=2)
    with pytest.raises(TargetError, match="3 attempt") as info:
        target.expectation_values(ARCH, *data(ARCH))
    assert isinstance(info.value, RuntimeError) and info.value.attempts == 3 and flaky.runs == 3
    assert isinstance(info.value.__cause__, ConnectionError)


# --- checks -------------------------------------------------------------------------------------
def test_width_check_names_both_numbers(manila):
    wide = Architecture(8, 1)
    for target in (resolve_target(manila), resolve_target(manila, mode="aer")):
        with pytest.raises(ValueError, match=r"8 qubits.*fake_manila.* 5 qubits"):
            target.check_width(wide)
        with pytest.raises(ValueError, match="8 qubits"):
            target.expectation_values(wide, *data(wide))
        target.check_width(5)
    resolve_target(None).check_width(wide)  # exact: no width limit


def test_bad_arguments_rejected_before_work(manila):
    with pytest.raises(ValueError, match="mode"):
        resolve_target(None, mode="cloud")
    with pytest.raises(ValueError, match="shots"):
        resolve_target(manila, shots=0)
    with pytest.raises(ValueError, match="mode='runtime'"):
        resolve_target(None, mode="runtime")
    with pytest.raises(ValueError, match="inputs"):
        resolve_target(None).expectation_values(ARCH, np.zeros((2, 3)), np.zeros(ARCH.n_weights))


def test_targets_pickle_after_use(noisy_aer, manila):
    x, w = data(ARCH, n=3)
    for target in (resolve_target(None), resolve_target(noisy_aer), resolve_target(manila, shots=64, seed=2)):
        before = target.expectation_values(ARCH, x, w).values
        clone = pickle.loads(pickle.dumps(target))
        np.testing.assert_allclose(clone.expectation_values(ARCH, x, w).values, before, atol=1e-12)
        assert clone.runtime_estimate(ARCH, 4) == target.runtime_estimate(ARCH, 4)
