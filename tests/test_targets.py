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

from qiskit_qnas.backends import target_backend, target_spec
from qiskit_qnas.circuits import build_circuit, z_observables
from qiskit_qnas.runtime_proxy import DEFAULT_JOB_OVERHEAD
from qiskit_qnas.space import Architecture
from qiskit_qnas.targets import (
    DEFAULT_PROXY_SHOTS,
    AerTarget,
    ExactTarget,
    RuntimeTarget,
    TargetError,
    resolve_target,
)
from qiskit_qnas.validation import InvalidArgument

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
    # every shot followed by the backend's repetition delay, plus the fixed overhead of the one job
    rep_delay = manila.configuration().default_rep_delay
    assert first.seconds == pytest.approx(10 * DEFAULT_PROXY_SHOTS * (critical + rep_delay) + DEFAULT_JOB_OVERHEAD,
                                          rel=1e-12)
    assert first.depth == isa.depth()
    assert first.n_two_qubit_gates == sum(inst.operation.num_qubits == 2 for inst in isa.data) > 0
    assert set(first.to_dict()) == {"seconds", "critical_path_seconds", "depth", "two_qubit_depth",
                                    "n_two_qubit_gates", "shots", "n_circuits", "backend_name",
                                    "executions_per_circuit", "calibration_executions", "rep_delay", "n_jobs",
                                    "job_overhead"}
    assert (first.executions_per_circuit, first.calibration_executions) == (DEFAULT_PROXY_SHOTS, 0)


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
    assert first.values.shape == (4, 4)
    for _ in range(2):  # with qiskit < 2.5.2 the program Runtime built differed in about 1 run of 3
        again = resolve_target(manila, shots=256, seed=0)
        np.testing.assert_array_equal(first.values, again.expectation_values(ARCH, x, w).values)
        again.close()
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


# --- Runtime error suppression and mitigation ----------------------------------------------------------
@pytest.mark.parametrize("options, match", [
    ({"resilience": 1}, r"runtime_options key\(s\) 'resilience'; allowed: resilience_level, twirling"),
    ({"resilience_level": 3}, r"resilience_level=3; allowed: 0, 1, 2"),
    ({"resilience_level": "1"}, r"resilience_level='1'; allowed: 0, 1, 2"),
    ({"twirling": True}, r"twirling=True; allowed: a dict with keys enable_gates, enable_measure"),
    ({"twirling": {"enable_gates": "yes"}}, r"twirling.enable_gates='yes'; allowed: True or False"),
    ({"twirling": {"num_randomizations": 0}}, r"twirling.num_randomizations=0; allowed: 'auto' or an integer >= 1"),
    ({"twirling": {"strategy": "all"}}, r"twirling key\(s\) 'strategy'; allowed: enable_gates"),
    ({"dynamical_decoupling": {"sequence_type": "XZ"}}, r"sequence_type='XZ'; allowed: XX, XpXm, XY4"),
    ({"dynamical_decoupling": {"enable": 1}}, r"dynamical_decoupling.enable=1; allowed: True or False"),
    ({"measure_mitigation": None}, r"measure_mitigation=None; allowed: True or False"),
    ("level1", r"runtime_options='level1'; allowed: None or a dict"),
])
def test_bad_runtime_options_are_refused_before_work(manila, options, match):
    with pytest.raises(ValueError, match=match):
        resolve_target(manila, shots=64, runtime_options=options)


def test_runtime_options_only_on_runtime_targets(manila, noisy_aer):
    for backend, mode in ((None, "auto"), (noisy_aer, "auto"), (manila, "aer")):
        with pytest.raises(ValueError, match="runtime_options=.*non-Runtime target"):
            resolve_target(backend, mode=mode, runtime_options={"resilience_level": 1})
    with pytest.raises(ValueError, match="resilience_level=2 with runtime_options resilience_level=1"):
        resolve_target(manila, resilience_level=2, runtime_options={"resilience_level": 1})


def test_runtime_options_reach_the_runtime_estimator(manila):
    options = {"resilience_level": 1, "twirling": {"enable_gates": True, "num_randomizations": 6},
               "dynamical_decoupling": {"enable": True, "sequence_type": "XY4"}, "zne_mitigation": False}
    with resolve_target(manila, shots=128, seed=1, runtime_options=options) as target:
        estimator = target.primitive()
        assert isinstance(estimator, RuntimeEstimator)
        o = estimator.options
        assert (o.resilience_level, o.default_shots) == (1, 128)
        assert (o.twirling.enable_gates, o.twirling.num_randomizations) == (True, 6)
        assert o.twirling.enable_measure is None  # left to the resilience level (True at level 1)
        assert (o.dynamical_decoupling.enable, o.dynamical_decoupling.sequence_type) == (True, "XY4")
        assert o.resilience.zne_mitigation is False
        assert target.runtime_options == options


def test_runtime_proxy_grows_with_the_mitigation_as_documented(manila):
    """seconds = n x F x R x s x (critical + rep_delay) + R_trex x s x (measure + rep_delay) + job overhead
    (see the README's formula)."""
    arch, n, shots = Architecture(3, 2, "angle_y", "ry", ("chain", "chain")), 20, 1024
    plain = resolve_target(manila, shots=shots).runtime_estimate(arch, n)
    critical = plain.critical_path_seconds
    assert plain.executions_per_circuit == shots and plain.calibration_executions == 0
    delay = manila.configuration().default_rep_delay
    assert plain.seconds == pytest.approx(n * shots * (critical + delay) + DEFAULT_JOB_OVERHEAD)
    measured = resolve_target(manila, shots=shots).isa(arch)[0].layout.final_index_layout()[:3]
    measure = max(manila.target["measure"][(q,)].duration for q in measured)
    # auto split of 1024 twirled shots: s = max(64, ceil(1024 / 32)) = 64 per randomization, R = 16
    cases = [({"resilience_level": 1}, 1, 16, 64, 16),          # TREX: measurement twirling + calibration
             ({"resilience_level": 2}, 3, 16, 64, 16),          # + ZNE at noise factors (1, 3, 5)
             ({"twirling": {"enable_gates": True, "num_randomizations": 10, "shots_per_randomization": 200}},
              1, 10, 200, 0),                                   # 10 x 200 = 2000 shots per parameter set
             ({"dynamical_decoupling": {"enable": True}}, 1, 1, shots, 0)]  # fills idle time: no extra shots
    seconds = []
    for options, factors, randomizations, per_randomization, trex in cases:
        estimate = resolve_target(manila, shots=shots, runtime_options=options).runtime_estimate(arch, n)
        assert estimate.executions_per_circuit == factors * randomizations * per_randomization, options
        assert estimate.calibration_executions == trex * per_randomization, options
        expected = (n * factors * randomizations * per_randomization * (critical + delay)
                    + trex * per_randomization * (measure + delay) + DEFAULT_JOB_OVERHEAD)
        assert estimate.seconds == pytest.approx(expected), options
        seconds.append(estimate.seconds)
    assert plain.seconds < seconds[0] < seconds[1] and seconds[2] > plain.seconds and seconds[3] == plain.seconds


def test_target_specs_from_python():
    assert target_spec(" Runtime:FakeManilaV2 ") == "runtime:manila"
    assert target_spec("exact") == "statevector" and target_spec("aer") == "aer"
    backend, mode = target_backend(target_spec("aer:fake_manila"))
    assert isinstance(backend, FakeManilaV2) and mode == "aer"
    assert resolve_target(backend, mode=mode).name == "aer:fake_manila"
    for bad in ("runtime:nope", "ibm", "qpu"):
        with pytest.raises(InvalidArgument) as info:
            target_spec(bad)
        assert (info.value.name, info.value.value) == ("target", bad)
        assert "runtime:<fake backend>" in info.value.allowed
    with pytest.raises(InvalidArgument, match="fake backends: .*manila"):
        target_spec("aer:nope")


def test_exact_target_starts_amplitude_states_from_their_closed_form():
    """The exact target compiles the amplitude embedding's RY tree as a preparation, not gate by gate."""
    program = resolve_target(None).program(Architecture(3, 1, "amplitude"))
    assert program._tree_inputs is not None


def test_aer_narrows_a_wide_device_s_noise_model_to_the_circuit_s_qubits_with_the_same_values():
    """Aer converts the whole noise model on every run (a 156-qubit device's: seconds); the target runs
    a candidate with only the errors on its qubits, and Aer computes the same values as with all."""
    from qiskit_ibm_runtime.fake_provider import FakeFez

    fez = AerSimulator.from_backend(FakeFez())
    target = resolve_target(fez, mode="aer", seed=3)
    x, w = data(ARCH)
    circuit, observables, values = target.pub(ARCH, x, w)
    narrowed = target._primitive_for(circuit)
    assert narrowed is not target.primitive() and target._primitive_for(circuit) is narrowed  # cached
    used = {circuit.find_bit(q).index for instruction in circuit.data for q in instruction.qubits}
    noise_model = narrowed._backend.options.noise_model
    assert 0 < len(noise_model.noise_qubits) and set(noise_model.noise_qubits) <= used
    full = AerEstimator.from_backend(fez, options={"default_precision": 0.0,
                                                   "run_options": {"seed_simulator": 11}})
    narrowed.options.run_options = {"seed_simulator": 11}
    pub = [(circuit, observables, values)]
    np.testing.assert_allclose(narrowed.run(pub).result()[0].data.evs, full.run(pub).result()[0].data.evs,
                               atol=1e-12)
