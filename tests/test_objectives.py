"""The objective protocol: the settings' objective list, where each value is read, failed candidates,
and the stored names results are written and read back under."""

import dataclasses
import json

import pytest
from qiskit.primitives import StatevectorEstimator
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from qiskit_qnas import Architecture, SearchResult, SearchSpace
from qiskit_qnas.cutting import cutting_cost
from qiskit_qnas.objective import (
    CUTTING_OBJECTIVES,
    KNOWN_OBJECTIVES,
    OBJECTIVE_NAMES,
    RUNTIME_OBJECTIVES,
    Objective,
    objective_named,
    search_objectives,
)
from qiskit_qnas.objectives import EvaluationContext, evaluate_candidate
from qiskit_qnas.result import Candidate
from qiskit_qnas.supercircuit import SuperCircuit
from qiskit_qnas.targets import resolve_target

X, Y = load_iris(return_X_y=True)
X = (X - X.mean(0)) / X.std(0)
X_TRAIN, X_VAL, Y_TRAIN, Y_VAL = train_test_split(X, Y, test_size=0.3, stratify=Y, random_state=0)
SPACE = SearchSpace(qubits=(3, 3), layers=(1, 1))
#: three qubits at a budget of two: cut, so that every cutting objective is a real number
ARCH = Architecture(3, 1, "angle_y", "ry", "all")
SETTINGS = [(r, c) for r in RUNTIME_OBJECTIVES for c in CUTTING_OBJECTIVES]


class AlwaysFails(StatevectorEstimator):
    """A real primitive whose every job fails (a backend that rejects the circuits)."""

    def run(self, pubs, *, precision=None):
        raise ConnectionError("backend refused the job")


def context(target, runtime_objective="proxy", cutting_objective="subcircuits") -> EvaluationContext:
    return EvaluationContext(supercircuit=SuperCircuit(SPACE, 4, 3, seed=0), X_train=X_TRAIN, y_train=Y_TRAIN,
                             X_val=X_VAL, y_val=Y_VAL, target=target, qubit_budget=2, finetune_epochs=1,
                             runtime_objective=runtime_objective, cutting_objective=cutting_objective)


@pytest.fixture(scope="module")
def evaluated():
    """ARCH evaluated on the exact target under the default settings."""
    found = evaluate_candidate(ARCH, context(resolve_target(None)))
    assert not found.failed
    return found


def test_the_default_objectives_are_the_stored_names():
    assert OBJECTIVE_NAMES == ("val_error", "runtime_proxy", "n_subcircuits")  # what result.json files hold
    assert tuple(o.name for o in search_objectives()) == OBJECTIVE_NAMES
    assert RUNTIME_OBJECTIVES == {"proxy": "runtime_proxy", "measured": "measured_seconds"}
    assert CUTTING_OBJECTIVES == {"subcircuits": "n_subcircuits", "subexperiments": "log10_subexperiments",
                                  "overhead": "log10_sampling_overhead"}


@pytest.mark.parametrize("runtime_objective, cutting_objective", SETTINGS)
def test_each_setting_picks_its_objectives(runtime_objective, cutting_objective):
    objectives = search_objectives(runtime_objective, cutting_objective)
    assert [o.name for o in objectives] == ["val_error", RUNTIME_OBJECTIVES[runtime_objective],
                                            CUTTING_OBJECTIVES[cutting_objective]]
    assert all(objective_named(o.name) is o for o in objectives)


@pytest.mark.parametrize("kwargs, match", [
    (dict(runtime_objective="wallclock"), r"runtime_objective.*'wallclock'.*proxy, measured"),
    (dict(cutting_objective="cuts"), r"cutting_objective.*'cuts'.*subcircuits, subexperiments, overhead"),
    (dict(runtime_objective=3), r"runtime_objective"),
])
def test_unknown_settings_are_refused_with_the_allowed_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        search_objectives(**kwargs)


@pytest.mark.parametrize("runtime_objective, cutting_objective", SETTINGS)
def test_each_objective_is_read_from_its_measurement(evaluated, runtime_objective, cutting_objective):
    """The values equal the ingredients computed independently: the cutting cost from cutting_cost,
    the runtime proxy from the target, the error from the validation accuracy."""
    target = resolve_target(None)
    found = evaluate_candidate(ARCH, context(target, runtime_objective, cutting_objective))
    cost = cutting_cost(ARCH, qubit_budget=2)
    assert cost.n_subcircuits > 1 and cost.log10_subexperiments > 0  # three qubits on two: it was cut
    expected_cutting = {"subcircuits": cost.n_subcircuits, "subexperiments": cost.log10_subexperiments,
                        "overhead": cost.log10_sampling_overhead}[cutting_objective]
    expected_runtime = (target.runtime_estimate(ARCH, n_circuits=len(X_VAL)).seconds
                        if runtime_objective == "proxy" else found.measured_seconds)
    assert found.val_error == evaluated.val_error == pytest.approx(1 - found.val_accuracy)
    assert found.objectives == pytest.approx((found.val_error, expected_runtime, expected_cutting))
    # an objective reads a stored candidate as it read the measurements
    again = Candidate.from_dict(json.loads(json.dumps(found.to_dict())))
    objectives = search_objectives(runtime_objective, cutting_objective)
    assert tuple(o.value_of(again) for o in objectives) == found.objectives


@pytest.mark.parametrize("runtime_objective, cutting_objective", SETTINGS)
def test_a_failed_candidate_scores_each_objective_s_failed_value(runtime_objective, cutting_objective):
    target = resolve_target(None, estimator=AlwaysFails(), max_retries=0, retry_backoff=0)
    found = evaluate_candidate(ARCH, context(target, runtime_objective, cutting_objective))
    assert found.failed and "backend refused" in found.error
    assert found.objectives == (1.0, 1e12, 1e6)  # what earlier versions stored for a failure
    assert found.objectives == tuple(o.failed_value for o in search_objectives(runtime_objective, cutting_objective))


def test_a_failed_value_is_worse_than_a_real_candidate_s(evaluated):
    for objective, value in zip(search_objectives(), evaluated.objectives):
        assert objective.failed_value > value


def test_the_context_is_unchanged_by_its_objectives():
    """The context is pickled to the workers and fingerprinted: the objectives are derived, not stored."""
    fields = {f.name for f in dataclasses.fields(EvaluationContext)}
    assert "objectives" not in fields and {"runtime_objective", "cutting_objective"} <= fields
    made = context(None, "measured", "overhead")
    assert [o.name for o in made.objectives] == ["val_error", "measured_seconds", "log10_sampling_overhead"]


def test_an_unknown_stored_name_still_loads_as_a_plain_objective(evaluated, tmp_path):
    data = SearchResult([evaluated], ("val_error", "runtime_proxy", "n_subcircuits")).to_dict()
    data["objective_names"][2] = "energy_joules"  # written by a version with another objective
    (tmp_path / "result.json").write_text(json.dumps(data))
    loaded = SearchResult.load(tmp_path)
    assert loaded.objective_names == ("val_error", "runtime_proxy", "energy_joules")
    assert loaded.objectives[:2] == (KNOWN_OBJECTIVES["val_error"], KNOWN_OBJECTIVES["runtime_proxy"])
    plain = loaded.objectives[2]
    assert plain == Objective("energy_joules") and plain.axis_label == "energy_joules"
    assert not plain.count and not plain.log10
    with pytest.raises(ValueError, match="energy_joules.*no source"):
        plain.value_of(evaluated)


def test_the_stored_result_keeps_its_names_and_values(evaluated, tmp_path):
    result = SearchResult([evaluated], search_objectives("measured", "subexperiments"))
    result.save(tmp_path)
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored["objective_names"] == ["val_error", "measured_seconds", "log10_subexperiments"]
    assert stored["candidates"][0]["objectives"] == list(evaluated.objectives)
    header = (tmp_path / "candidates.csv").read_text().splitlines()[0].split(",")
    assert [h for h in header if h.startswith("objective_")] == [
        "objective_val_error", "objective_measured_seconds", "objective_log10_subexperiments"]
    assert SearchResult.load(tmp_path).objectives == result.objectives
