"""The shared argument checks (:mod:`qiskit_qnas.validation`), the error they raise, and that the public
entry points and the command line report a bad argument through it."""

import math
import pickle

import numpy as np
import pytest
from sklearn.datasets import load_iris

from qiskit_qnas import Architecture, QNASEstimator, SearchSpace
from qiskit_qnas.cli import _library_error, main
from qiskit_qnas.cut_execution import cut_expectation_values
from qiskit_qnas.cutting import cutting_cost
from qiskit_qnas.targets import resolve_target
from qiskit_qnas.validation import (
    InvalidArgument,
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_parameter_values,
    check_positive,
    is_integer,
    is_number,
)


# --- what a number is -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -3, 2**70, np.int8(1), np.int64(5), np.uint16(7)])
def test_integers_include_numpy_integers(value):
    assert is_integer(value) and is_number(value)


@pytest.mark.parametrize("value", [True, False, np.True_, 2.0, np.float64(3), "3", None, [1], 1j])
def test_bools_floats_and_strings_are_not_integers(value):
    assert not is_integer(value)


@pytest.mark.parametrize("value", [0.5, np.float32(0.5), np.float64(-1), math.inf, math.nan, 3, np.int32(3)])
def test_numbers_include_numpy_floats(value):
    assert is_number(value)


@pytest.mark.parametrize("value", [True, np.False_, "0.5", None, 1j, [0.5]])
def test_bools_and_strings_are_not_numbers(value):
    assert not is_number(value)


# --- the checks -------------------------------------------------------------------------------------
def test_check_int_accepts_and_normalises():
    assert check_int("n", 1, 1) == 1
    assert check_int("n", 3, 1, 3) == 3
    value = check_int("n", np.int64(4), 1)
    assert value == 4 and type(value) is int
    assert check_int("n", None, 1, allow_none=True) is None


@pytest.mark.parametrize("value, low, high, allowed", [
    (0, 1, None, "an integer >= 1"),
    (4, 1, 3, "an integer from 1 to 3"),
    (True, 0, None, "an integer >= 0"),
    (np.True_, 0, None, "an integer >= 0"),
    (2.0, 1, None, "an integer >= 1"),
    ("2", 1, None, "an integer >= 1"),
    (None, 1, None, "an integer >= 1"),
])
def test_check_int_refuses(value, low, high, allowed):
    with pytest.raises(InvalidArgument) as info:
        check_int("n", value, low, high)
    assert info.value.allowed == allowed
    assert str(info.value) == f"invalid n={value!r}; allowed: {allowed}"


def test_check_int_none_and_custom_allowed_text():
    with pytest.raises(InvalidArgument, match=r"^invalid n=0; allowed: an integer >= 1 or None$"):
        check_int("n", 0, 1, allow_none=True)
    with pytest.raises(InvalidArgument, match=r"^invalid level=3; allowed: 0, 1, 2$"):
        check_int("level", 3, 0, 2, allowed="0, 1, 2")


def test_check_number_bounds():
    assert check_number("x", 0, 0, 1) == 0.0
    assert check_number("x", np.float32(0.25), 0, 1) == 0.25
    assert check_number("x", math.inf, 1, high_inclusive=True) == math.inf
    assert check_number("x", None, allow_none=True) is None
    for value in (1, math.nan, True, "0.5"):
        with pytest.raises(InvalidArgument, match="invalid x="):
            check_number("x", value, 0, 1)
    with pytest.raises(InvalidArgument, match=r"allowed: a number > 0 and < 1$"):
        check_number("x", 0, 0, 1, low_inclusive=False)
    with pytest.raises(InvalidArgument, match=r"allowed: a finite number$"):
        check_number("x", -math.inf)


def test_check_positive_and_fraction():
    assert check_positive("t", 2) == 2.0 and check_positive("t", np.int64(2)) == 2.0
    assert check_positive("t", 0, allow_zero=True) == 0.0
    assert check_positive("t", None, allow_none=True) is None
    for value in (0, -1, math.inf, math.nan, True):
        with pytest.raises(InvalidArgument, match=r"allowed: a finite number > 0$"):
            check_positive("t", value)
    with pytest.raises(InvalidArgument, match=r"allowed: a finite number >= 0 or None$"):
        check_positive("t", -1, allow_zero=True, allow_none=True)
    assert check_fraction("f", 0.5) == 0.5
    for value in (0, 1, math.nan, True):
        with pytest.raises(InvalidArgument, match=r"allowed: a number strictly between 0 and 1$"):
            check_fraction("f", value)


def test_check_choice():
    assert check_choice("mode", "b", ("a", "b")) == "b"
    for value in ("c", None, ["a"], 1):
        with pytest.raises(InvalidArgument, match=r"; allowed: a, b$"):
            check_choice("mode", value, ("a", "b"))


# --- the error --------------------------------------------------------------------------------------
def test_invalid_argument_carries_name_value_allowed():
    error = InvalidArgument("shots", 0, "an integer >= 1")
    assert isinstance(error, ValueError)
    assert (error.name, error.value, error.allowed, error.context, error.message) == (
        "shots", 0, "an integer >= 1", "", None)
    assert str(error) == "invalid shots=0; allowed: an integer >= 1"
    qualified = InvalidArgument("mode", "exact", "'auto'", context=" with backend=fake_manila")
    assert str(qualified) == "invalid mode='exact' with backend=fake_manila; allowed: 'auto'"
    worded = InvalidArgument("inputs", [1], "finite numbers", message="invalid inputs of shape (1,)")
    assert str(worded) == "invalid inputs of shape (1,)" and worded.name == "inputs" and worded.value == [1]


def test_invalid_argument_pickles_with_its_attributes():
    error = InvalidArgument("mode", "exact", "'auto'", context=" with backend=None")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is InvalidArgument and str(copy) == str(error)
    assert (copy.name, copy.value, copy.allowed, copy.context) == ("mode", "exact", "'auto'", " with backend=None")


# --- the public entry points raise it ---------------------------------------------------------------
def test_entry_points_name_the_argument():
    with pytest.raises(InvalidArgument) as info:
        SearchSpace(qubits=(0, 2))
    assert (info.value.name, info.value.value) == ("qubits", (0, 2))
    with pytest.raises(InvalidArgument) as info:
        Architecture(0, 1)
    assert info.value.name == "n_qubits"
    with pytest.raises(InvalidArgument) as info:
        cutting_cost(Architecture(2, 1), qubit_budget=0)
    assert (info.value.name, info.value.value, info.value.allowed) == ("qubit_budget", 0, "an integer >= 1")
    with pytest.raises(InvalidArgument) as info:
        resolve_target(None, max_concurrent_jobs=2)
    assert (info.value.name, info.value.context) == ("max_concurrent_jobs", " for a non-Runtime target")


def test_estimator_names_the_argument_before_any_training():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(InvalidArgument) as info:
        QNASEstimator(population_size=1).fit(X[::15], y[::15])  # 10 rows, every class
    assert (info.value.name, info.value.value, info.value.allowed) == ("population_size", 1, "an integer >= 2")


# --- the command line names the flag ----------------------------------------------------------------
def test_cli_reports_a_library_refusal_under_its_flag(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as info:  # refused by resolve_target, not by the argument parser
        main(["search", "--dataset", "iris", "--max-concurrent-jobs", "2", "--out", str(out)])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "qnas: error: --max-concurrent-jobs: invalid value 2 for a non-Runtime target; allowed: 1 (jobs in flight "
        "are a Runtime setting: use executor= or n_jobs= to evaluate candidates in parallel elsewhere)\n")
    assert not out.exists()


def test_cli_maps_only_invalid_arguments():
    assert _library_error(InvalidArgument("population_size", 1, "an integer >= 2")) == (
        "--population: invalid value 1; allowed: an integer >= 2")
    assert _library_error(InvalidArgument("widths", [5], "at most 4"), "--target") == (
        "--target: invalid value [5]; allowed: at most 4")
    # another library's error is passed through, even when it reads like one of ours
    lookalike = ValueError("invalid population_size=1; allowed: an integer >= 2")
    assert _library_error(lookalike) == "invalid population_size=1; allowed: an integer >= 2"
    assert _library_error(lookalike, "--dataset") == "--dataset: invalid population_size=1; allowed: an integer >= 2"


# --- circuit parameter values ------------------------------------------------------------------------
def test_parameter_values_rows_vectors_and_refusals():
    np.testing.assert_array_equal(check_parameter_values("inputs", [0.1, 0.2], 2, rows=True), [[0.1, 0.2]])
    assert check_parameter_values("weights", np.zeros(3, dtype=np.float32), 3, rows=False).dtype == np.float64
    assert check_parameter_values("inputs", np.zeros((0, 2)), 2, rows=True, allow_empty=True).shape == (0, 2)
    for values, rows in (([0.1, math.nan], True), ([[0.1, 0.2, 0.3]], True), ([[0.1], [0.2]], False),
                         (["a", "b"], False), (np.zeros((0, 2)), True)):
        with pytest.raises(InvalidArgument) as caught:
            check_parameter_values("inputs", values, 2, rows=rows, context=" for q2")
        assert caught.value.name == "inputs" and " for q2" in str(caught.value)


def test_targets_and_cut_execution_refuse_the_same_parameter_values():
    arch = Architecture(2, 1, "angle_y", "ry", "chain")
    bad_inputs = [[0.1, math.nan]]
    with pytest.raises(InvalidArgument, match="finite numbers of shape"):
        resolve_target(None).expectation_values(arch, bad_inputs, np.zeros(arch.n_weights))
    with pytest.raises(InvalidArgument, match="finite numbers of shape"):
        cut_expectation_values(arch, bad_inputs, np.zeros(arch.n_weights), qubit_budget=1)
    wrong_width = r"weights of shape \(3,\) for q2-l1-angle_y-ry-chain1; allowed: .* \(2,\)"
    with pytest.raises(InvalidArgument, match=wrong_width):
        resolve_target(None).expectation_values(arch, [[0.1, 0.2]], np.zeros(arch.n_weights + 1))
